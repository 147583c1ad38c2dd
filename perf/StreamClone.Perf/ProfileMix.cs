namespace StreamClone.Perf;

/// <summary>
/// Per-profile page mix: the share of pages of each <see cref="PageKind"/>, the mean run length
/// (in pages) of each kind, and what rewritten pages become. Arrays are indexed by (int)PageKind.
/// </summary>
/// <remarks>
/// Memory is tuned so that a snapshot (4 KiB chunks, dedup, 64 KiB batches at zstd -1, see
/// <see cref="ImageAnalyzer"/>) is ~31 % of the image on the wire. Measured zstd -1 ratios of the
/// kinds in 64 KiB batches: text 38 %, code 62 %, structured 32 %, random 100 %; so the 52 % of
/// unique pages cost 0.12·0.38 + 0.10·0.62 + 0.15·0.32 + 0.13·1.0 ≈ 0.29 of the image, plus
/// ~0.5 % of kinds, hashes and frame headers.
/// </remarks>
internal sealed class ProfileMix
{
    public const int KindCount = 6;

    private ProfileMix(double[] shares, double[] meanRuns, double zeroedShare, double[] dirtyShares)
    {
        Shares = shares;
        MeanRuns = meanRuns;
        ZeroedShare = zeroedShare;
        DirtyShares = dirtyShares;
    }

    /// <summary>Target fraction of pages per kind (sums to 1).</summary>
    public double[] Shares { get; }

    /// <summary>Mean run length in pages per kind (geometric).</summary>
    public double[] MeanRuns { get; }

    /// <summary>
    /// Probability that <see cref="ImageMutator"/> turns a changed non-zero page into a zero page
    /// (memory freed). Set to z/(1-z) for the profile's zero share z: a changed page was zero with
    /// probability z and then always becomes data, so this keeps the zero share of the image
    /// steady from snapshot to snapshot.
    /// </summary>
    public double ZeroedShare { get; }

    /// <summary>
    /// Kinds of the new data written into changed pages (sums to 1; Zero and Duplicate are 0, since
    /// a rewrite is new content). Weighted to structured and text: between two snapshots the
    /// writes go mostly to heap and kernel structures and logs, while random-looking pages
    /// (compressed file cache, key material) and code are mostly read-only.
    /// </summary>
    public double[] DirtyShares { get; }

    public static ProfileMix For(ImageProfile profile) => profile switch
    {
        ImageProfile.Memory => Memory,
        ImageProfile.Disk => Disk,
        _ => throw new ArgumentOutOfRangeException(nameof(profile), profile, "unknown image profile"),
    };

    // Kinds in order: Zero, Text, Code, Structured, Random, Duplicate.
    private static readonly ProfileMix Memory = new(
        shares: [0.40, 0.12, 0.10, 0.15, 0.13, 0.10],
        meanRuns: [24, 3, 6, 3, 4, 2],
        zeroedShare: 0.40 / 0.60,
        dirtyShares: [0, 0.30, 0.10, 0.55, 0.05, 0]);

    private static readonly ProfileMix Disk = new(
        shares: [0.15, 0.30, 0.12, 0.20, 0.15, 0.08],
        meanRuns: [64, 16, 16, 12, 32, 8],
        zeroedShare: 0.15 / 0.85,
        dirtyShares: [0, 0.42, 0.07, 0.48, 0.03, 0]);
}
