using System.Diagnostics;
using StreamClone.Shared.Chunking;

namespace StreamClone.Perf;

/// <summary>
/// Writes a changed copy of an image: the next snapshot of the same guest. A requested share of
/// 4 KiB pages is rewritten with new content, in short runs scattered over the whole image (dirty
/// memory comes in clusters of a few pages, not in one block). The new content is drawn from the
/// profile's dirty mix (<see cref="ProfileMix.ZeroedShare"/>, <see cref="ProfileMix.DirtyShares"/>):
/// a data page may be freed to zero, a zero page always becomes data, and data is fresh text,
/// code, structured or random content, never a copy of an existing page. Copies in
/// 4 MiB blocks and rewrites the chosen pages in the block, so memory stays bounded.
/// </summary>
public static class ImageMutator
{
    public const int PageSize = PageSynthesizer.PageSize;

    /// <summary>Mean length of a run of changed pages (geometric): clusters, yet ~3,300 runs per GiB at 5 %.</summary>
    private const double MeanChangedRun = 4;

    /// <param name="source">The image to copy.</param>
    /// <param name="destination">The changed copy (created or overwritten).</param>
    /// <param name="percentPages">Share of pages to rewrite, 0..100.</param>
    /// <param name="seed">Chooses the pages and their new content.</param>
    /// <param name="profile">Which dirty mix the new content follows.</param>
    /// <param name="ct">Cancels between blocks.</param>
    public static async Task<MutationSummary> MutateAsync(string source, string destination, double percentPages, int seed,
        ImageProfile profile = ImageProfile.Memory, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(source);
        ArgumentException.ThrowIfNullOrEmpty(destination);
        if (double.IsNaN(percentPages) || percentPages is < 0 or > 100)
        {
            throw new ArgumentOutOfRangeException(nameof(percentPages), percentPages, "percentage of pages must be within 0..100");
        }
        if (Path.GetFullPath(source) == Path.GetFullPath(destination))
        {
            throw new ArgumentException("source and destination must differ", nameof(destination));
        }

        var stopwatch = Stopwatch.StartNew();
        await using var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous | FileOptions.SequentialScan);
        var size = input.Length;
        if (size % PageSize != 0)
        {
            throw new ArgumentException($"{source}: size {size} is not a multiple of {PageSize}", nameof(source));
        }
        await using var output = new FileStream(destination, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous);

        var plan = new ChangePlan(size / PageSize, (long)Math.Round(size / PageSize * percentPages / 100), seed);
        var synth = new PageSynthesizer(unchecked(seed ^ 0x5F3759DF));
        var mix = ProfileMix.For(profile);
        var blocks = new[] { new byte[ImageGenerator.BlockPages * PageSize], new byte[ImageGenerator.BlockPages * PageSize] };
        long changed = 0, zeroed = 0, newData = 0;
        var pending = Task.CompletedTask;
        for (var next = 0; ; next ^= 1)
        {
            ct.ThrowIfCancellationRequested();
            // blocks[next] was written two iterations ago; that write was awaited before the last one started.
            var length = await input.ReadAtLeastAsync(blocks[next], blocks[next].Length, throwOnEndOfStream: false, ct);
            if (length == 0)
            {
                break;
            }
            var block = blocks[next].AsMemory(0, length);
            for (var offset = 0; offset < length; offset += PageSize)
            {
                if (!plan.NextIsChanged())
                {
                    continue;
                }
                var page = block.Span.Slice(offset, PageSize);
                var wasZero = ZeroDetector.IsAllZero(page);
                var kind = !wasZero && synth.Rng.NextDouble() < mix.ZeroedShare
                    ? PageKind.Zero
                    : PickDataKind(ref synth.Rng, mix.DirtyShares);
                synth.Write(kind, page);
                changed++;
                if (kind == PageKind.Zero)
                {
                    zeroed++;
                }
                else
                {
                    newData++;
                }
            }
            await pending;
            pending = output.WriteAsync(block, ct).AsTask();
        }
        await pending;
        return new MutationSummary(source, destination, size / PageSize, changed, plan.Runs, zeroed, newData, stopwatch.Elapsed);
    }

    private static PageKind PickDataKind(ref Xoshiro256 rng, double[] shares)
    {
        var x = rng.NextDouble();
        for (var k = 0; k < shares.Length; k++)
        {
            x -= shares[k];
            if (x < 0 && shares[k] > 0)
            {
                return (PageKind)k;
            }
        }
        return PageKind.Structured;
    }

    /// <summary>
    /// Alternates unchanged gaps and changed runs. Each gap is drawn so that the remaining changes
    /// fit the remaining pages, which lands on the requested count (give or take the last run)
    /// while keeping runs and gaps random.
    /// </summary>
    private sealed class ChangePlan
    {
        private readonly long _pages;
        private Xoshiro256 _rng;
        private long _position;
        private long _remainingChanges;
        private long _gapLeft;
        private long _runLeft;

        public ChangePlan(long pages, long changes, int seed)
        {
            _pages = pages;
            _remainingChanges = Math.Min(changes, pages);
            _rng = new Xoshiro256(unchecked((ulong)(uint)seed * 0xD1B54A32D192ED03UL + 7));
            Schedule();
        }

        public long Runs { get; private set; }

        public bool NextIsChanged()
        {
            _position++;
            if (_gapLeft > 0)
            {
                _gapLeft--;
                return false;
            }
            if (_runLeft == 0)
            {
                return false;
            }
            _runLeft--;
            _remainingChanges--;
            if (_runLeft == 0)
            {
                Schedule();
            }
            return true;
        }

        private void Schedule()
        {
            if (_remainingChanges <= 0)
            {
                _runLeft = 0;
                return;
            }
            var run = Math.Min(_rng.NextRunLength(MeanChangedRun), _remainingChanges);
            var remainingPages = _pages - _position;
            var slack = remainingPages - _remainingChanges;
            if (slack <= 0)
            {
                _gapLeft = 0;
            }
            else
            {
                // Mean gap = slack spread over the runs still to come; uniform in [0, 2·mean].
                var runsToCome = Math.Max(1.0, _remainingChanges / MeanChangedRun);
                var meanGap = slack / runsToCome;
                _gapLeft = Math.Min(slack, (long)(_rng.NextDouble() * 2 * meanGap));
            }
            _runLeft = run;
            Runs++;
        }
    }
}
