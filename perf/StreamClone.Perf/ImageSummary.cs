namespace StreamClone.Perf;

/// <summary>What <see cref="ImageGenerator"/> wrote: page counts per <see cref="PageKind"/>.</summary>
public sealed record ImageSummary(string Path, long Size, ImageProfile Profile, int Seed, IReadOnlyList<long> PagesByKind, TimeSpan Elapsed)
{
    public long Pages => Size / PageSynthesizer.PageSize;

    public long PagesOf(PageKind kind) => PagesByKind[(int)kind];

    public double FractionOf(PageKind kind) => Pages == 0 ? 0 : (double)PagesOf(kind) / Pages;

    public double MegabytesPerSecond => Size / 1e6 / Math.Max(Elapsed.TotalSeconds, 1e-9);

    public override string ToString() =>
        $"{Path}: {Size} bytes ({Profile}, seed {Seed}) in {Elapsed.TotalSeconds:F2} s ({MegabytesPerSecond:F0} MB/s); pages: " +
        string.Join(", ", Enum.GetValues<PageKind>().Select(k => $"{k.ToString().ToLowerInvariant()} {FractionOf(k):P1}"));
}
