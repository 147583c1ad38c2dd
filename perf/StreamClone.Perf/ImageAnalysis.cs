using StreamClone.Shared.Model;

namespace StreamClone.Perf;

/// <summary>
/// How an image would travel as one snapshot: chunk counts by entry kind and the bytes of the
/// ChunkBatch frames that would carry it (see <see cref="ImageAnalyzer"/>).
/// </summary>
public sealed record ImageAnalysis
{
    public required long Size { get; init; }
    public required long Chunks { get; init; }
    public required long ZeroChunks { get; init; }
    /// <summary>Non-zero chunks whose bytes appeared earlier in the same image.</summary>
    public required long DuplicateChunks { get; init; }
    /// <summary>Non-zero chunks the receiver already held (in the inventory passed in).</summary>
    public required long KnownChunks { get; init; }
    /// <summary>Chunks whose bytes travel.</summary>
    public required long DataChunks { get; init; }
    public required long CompressedDataBytes { get; init; }
    /// <summary>Every ChunkBatch frame in full: prefix, MessagePack header (kinds and hashes) and payload.</summary>
    public required long WireBytes { get; init; }
    /// <summary>Distinct non-zero chunk hashes of the image: the receiver's inventory after it stores the snapshot.</summary>
    public required IReadOnlySet<ChunkHash> Hashes { get; init; }

    public double WireFraction => Size == 0 ? 0 : (double)WireBytes / Size;

    public override string ToString() =>
        $"{Chunks} chunks: zero {Pct(ZeroChunks)}, duplicate {Pct(DuplicateChunks)}, known {Pct(KnownChunks)}, data {Pct(DataChunks)}; " +
        $"wire {WireBytes} bytes = {WireFraction:P1} of {Size}";

    private string Pct(long n) => Chunks == 0 ? "0" : $"{(double)n / Chunks:P1}";
}
