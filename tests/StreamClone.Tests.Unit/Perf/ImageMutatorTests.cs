using StreamClone.Perf;
using StreamClone.Shared.Model;

namespace StreamClone.Tests.Unit.Perf;

public sealed class ImageMutatorTests : IDisposable
{
    private const int Page = 4096;
    private readonly TempDir _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Changes_about_the_requested_share_of_pages_scattered_over_the_image()
    {
        var (before, after, summary) = await MutateAsync(32 << 20, 5);
        var pages = before.Length / Page;
        var changed = Enumerable.Range(0, pages).Where(p => !PageOf(before, p).SequenceEqual(PageOf(after, p))).ToArray();

        Assert.Equal(before.Length, after.Length);
        Assert.Equal(summary.ChangedPages, changed.Length);
        Assert.InRange(changed.Length, (int)(pages * 0.049), (int)(pages * 0.051));
        // Scattered: every sixteenth of the image has changes, and no run is a block of its own.
        var regions = changed.Select(p => p * 16 / pages).Distinct().Count();
        Assert.Equal(16, regions);
        Assert.True(summary.Runs >= 100, $"only {summary.Runs} runs");
        Assert.True(LongestRun(changed) < 64, $"a run of {LongestRun(changed)} pages");
    }

    [Fact]
    public async Task Changed_pages_are_new_content_not_copies_of_other_pages()
    {
        var (before, after, summary) = await MutateAsync(32 << 20, 5);
        var pages = before.Length / Page;
        var original = new HashSet<ChunkHash>(Enumerable.Range(0, pages).Select(p => ChunkHash.Compute(PageOf(before, p))));
        var written = new HashSet<ChunkHash>();
        var newData = 0;
        for (var p = 0; p < pages; p++)
        {
            var page = PageOf(after, p);
            if (page.SequenceEqual(PageOf(before, p)) || !page.ContainsAnyExcept((byte)0))
            {
                continue;
            }
            var hash = ChunkHash.Compute(page);
            Assert.DoesNotContain(hash, original);
            Assert.True(written.Add(hash), $"page {p} repeats another changed page");
            newData++;
        }
        Assert.Equal(summary.NewDataPages, newData);
        Assert.True(summary.ZeroedPages > 0, "some data pages are freed to zero");
    }

    [Theory]
    [InlineData(ImageProfile.Memory)]
    [InlineData(ImageProfile.Disk)]
    public async Task Second_snapshot_of_a_5_percent_change_costs_at_most_7_percent_of_the_first(ImageProfile profile)
    {
        var source = _dir.File("a");
        var changed = _dir.File("b");
        await ImageGenerator.GenerateAsync(source, 64 << 20, profile, seed: 11, Ct);
        await ImageMutator.MutateAsync(source, changed, 5, seed: 12, profile, Ct);

        var first = await ImageAnalyzer.AnalyzeAsync(source, ct: Ct);
        var second = await ImageAnalyzer.AnalyzeAsync(changed, first.Hashes, ct: Ct);

        var ratio = (double)second.WireBytes / first.WireBytes;
        Assert.True(ratio <= 0.07, $"second snapshot is {ratio:P2} of the first ({second.WireBytes} / {first.WireBytes} bytes)");
    }

    [Fact]
    public async Task Same_seed_gives_the_same_copy()
    {
        var source = _dir.File("a");
        await ImageGenerator.GenerateAsync(source, 4 << 20, ImageProfile.Disk, seed: 1, Ct);
        await ImageMutator.MutateAsync(source, _dir.File("b"), 10, seed: 2, ImageProfile.Disk, Ct);
        await ImageMutator.MutateAsync(source, _dir.File("c"), 10, seed: 2, ImageProfile.Disk, Ct);

        Assert.Equal(await File.ReadAllBytesAsync(_dir.File("b"), Ct), await File.ReadAllBytesAsync(_dir.File("c"), Ct));
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(100, 1024)]
    public async Task Edge_percentages(double percent, int expectedChanged)
    {
        var (_, _, summary) = await MutateAsync(4 << 20, percent);

        Assert.Equal(expectedChanged, summary.ChangedPages);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(100.5)]
    [InlineData(double.NaN)]
    public async Task Rejects_percentages_outside_0_to_100(double percent)
    {
        await ImageGenerator.GenerateAsync(_dir.File("a"), 1 << 20, ImageProfile.Memory, 1, Ct);

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => ImageMutator.MutateAsync(_dir.File("a"), _dir.File("b"), percent, 1, ImageProfile.Memory, Ct));
    }

    private async Task<(byte[] Before, byte[] After, MutationSummary Summary)> MutateAsync(long size, double percent)
    {
        await ImageGenerator.GenerateAsync(_dir.File("a"), size, ImageProfile.Memory, seed: 3, Ct);
        var summary = await ImageMutator.MutateAsync(_dir.File("a"), _dir.File("b"), percent, seed: 4, ImageProfile.Memory, Ct);
        return (await File.ReadAllBytesAsync(_dir.File("a"), Ct), await File.ReadAllBytesAsync(_dir.File("b"), Ct), summary);
    }

    private static ReadOnlySpan<byte> PageOf(byte[] image, int page) => image.AsSpan(page * Page, Page);

    private static int LongestRun(int[] sortedPages)
    {
        int longest = 0, current = 0;
        for (var i = 0; i < sortedPages.Length; i++)
        {
            current = i > 0 && sortedPages[i] == sortedPages[i - 1] + 1 ? current + 1 : 1;
            longest = Math.Max(longest, current);
        }
        return longest;
    }
}
