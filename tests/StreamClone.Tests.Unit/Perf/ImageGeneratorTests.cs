using StreamClone.Perf;

namespace StreamClone.Tests.Unit.Perf;

public sealed class ImageGeneratorTests : IDisposable
{
    private readonly TempDir _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Same_seed_gives_identical_bytes()
    {
        await ImageGenerator.GenerateAsync(_dir.File("a"), 8 << 20, ImageProfile.Memory, seed: 7, Ct);
        await ImageGenerator.GenerateAsync(_dir.File("b"), 8 << 20, ImageProfile.Memory, seed: 7, Ct);

        Assert.Equal(await File.ReadAllBytesAsync(_dir.File("a"), Ct), await File.ReadAllBytesAsync(_dir.File("b"), Ct));
    }

    [Fact]
    public async Task Different_seed_gives_different_bytes()
    {
        await ImageGenerator.GenerateAsync(_dir.File("a"), 8 << 20, ImageProfile.Memory, seed: 7, Ct);
        await ImageGenerator.GenerateAsync(_dir.File("b"), 8 << 20, ImageProfile.Memory, seed: 8, Ct);

        var a = await File.ReadAllBytesAsync(_dir.File("a"), Ct);
        var b = await File.ReadAllBytesAsync(_dir.File("b"), Ct);
        Assert.Equal(a.Length, b.Length);
        Assert.False(a.AsSpan().SequenceEqual(b));
    }

    [Fact]
    public async Task Profiles_differ_for_the_same_seed()
    {
        await ImageGenerator.GenerateAsync(_dir.File("m"), 4 << 20, ImageProfile.Memory, seed: 7, Ct);
        await ImageGenerator.GenerateAsync(_dir.File("d"), 4 << 20, ImageProfile.Disk, seed: 7, Ct);

        var memory = await File.ReadAllBytesAsync(_dir.File("m"), Ct);
        var disk = await File.ReadAllBytesAsync(_dir.File("d"), Ct);
        Assert.False(memory.AsSpan().SequenceEqual(disk));
    }

    [Fact]
    public async Task Memory_profile_mix_is_within_the_stated_ranges()
    {
        var path = _dir.File("mem");
        var summary = await ImageGenerator.GenerateAsync(path, 64 << 20, ImageProfile.Memory, seed: 1, Ct);
        // Measured from the bytes, independently of the generator's own counts.
        var analysis = await ImageAnalyzer.AnalyzeAsync(path, ct: Ct);

        Assert.Equal(64L << 20, new FileInfo(path).Length);
        Assert.InRange(Fraction(analysis.ZeroChunks, analysis), 0.35, 0.45);
        Assert.InRange(Fraction(analysis.DuplicateChunks, analysis), 0.07, 0.13);
        // Every non-duplicate page is unique: the bytes show no more duplicates than were written.
        Assert.InRange(analysis.DuplicateChunks, summary.PagesOf(PageKind.Duplicate) - 2, summary.PagesOf(PageKind.Duplicate));
        Assert.Equal(summary.PagesOf(PageKind.Zero), analysis.ZeroChunks);
        // 4 KiB dedup + zstd -1 in 64 KiB batches: the stated ~30-35 % on the wire.
        Assert.InRange(analysis.WireFraction, 0.28, 0.36);
        foreach (var kind in new[] { PageKind.Text, PageKind.Code, PageKind.Structured, PageKind.Random })
        {
            Assert.InRange(summary.FractionOf(kind), 0.08, 0.20);
        }
    }

    [Fact]
    public async Task Disk_profile_has_fewer_zeros_and_longer_runs()
    {
        var disk = await ImageGenerator.GenerateAsync(_dir.File("disk"), 64 << 20, ImageProfile.Disk, seed: 1, Ct);
        var memory = await ImageGenerator.GenerateAsync(_dir.File("mem"), 64 << 20, ImageProfile.Memory, seed: 1, Ct);
        var analysis = await ImageAnalyzer.AnalyzeAsync(_dir.File("disk"), ct: Ct);

        Assert.InRange(Fraction(analysis.ZeroChunks, analysis), 0.10, 0.20);
        Assert.InRange(Fraction(analysis.DuplicateChunks, analysis), 0.05, 0.11);
        Assert.True(disk.FractionOf(PageKind.Text) > memory.FractionOf(PageKind.Text));
        Assert.True(await MeanRunAsync(_dir.File("disk")) > 2 * await MeanRunAsync(_dir.File("mem")));
    }

    [Theory]
    [InlineData(4095)]
    [InlineData(4097)]
    [InlineData(-4096)]
    public async Task Size_must_be_a_multiple_of_the_page_size(long size) =>
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageGenerator.GenerateAsync(_dir.File("x"), size, ImageProfile.Memory, 1, Ct));

    [Fact]
    public async Task Odd_sizes_that_are_whole_pages_are_written_exactly()
    {
        // Not a multiple of the 4 MiB block: the last block is partial.
        var size = (5L << 20) + (3 * 4096);
        await ImageGenerator.GenerateAsync(_dir.File("odd"), size, ImageProfile.Disk, 3, Ct);

        Assert.Equal(size, new FileInfo(_dir.File("odd")).Length);
    }

    private static double Fraction(long n, ImageAnalysis analysis) => (double)n / analysis.Chunks;

    /// <summary>Mean length of runs of pages that are all zero or all non-zero: how long page runs are.</summary>
    private static async Task<double> MeanRunAsync(string path)
    {
        var bytes = await File.ReadAllBytesAsync(path, Ct);
        var runs = 1;
        var previous = IsZero(bytes, 0);
        for (var p = 1; p < bytes.Length / 4096; p++)
        {
            var zero = IsZero(bytes, p);
            if (zero != previous)
            {
                runs++;
                previous = zero;
            }
        }
        return (double)(bytes.Length / 4096) / runs;

        static bool IsZero(byte[] bytes, int page) => !bytes.AsSpan(page * 4096, 4096).ContainsAnyExcept((byte)0);
    }
}
