namespace StreamClone.Perf;

/// <summary>What <see cref="ImageMutator"/> changed.</summary>
public sealed record MutationSummary(string Source, string Destination, long Pages, long ChangedPages, long Runs,
    long ZeroedPages, long NewDataPages, TimeSpan Elapsed)
{
    public double ChangedFraction => Pages == 0 ? 0 : (double)ChangedPages / Pages;

    public override string ToString() =>
        $"{Destination}: {ChangedPages} of {Pages} pages changed ({ChangedFraction:P2}) in {Runs} runs " +
        $"({NewDataPages} new data, {ZeroedPages} zeroed) in {Elapsed.TotalSeconds:F2} s";
}
