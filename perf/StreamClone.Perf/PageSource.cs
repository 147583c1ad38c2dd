namespace StreamClone.Perf;

/// <summary>
/// The sequence of pages of a generated image: picks run kinds and lengths, writes pages through
/// <see cref="PageSynthesizer"/>, and keeps a reservoir of earlier pages for duplicates.
/// </summary>
internal sealed class PageSource
{
    /// <summary>
    /// 2,048 pages (8 MiB). Reservoir sampling keeps a uniform sample of every data page so far, so
    /// a duplicate may copy a page from anywhere earlier in the image (a shared library mapped by
    /// two processes is far apart in guest RAM), not only from the last few megabytes.
    /// </summary>
    private const int ReservoirPages = 2048;
    private const int PageSize = PageSynthesizer.PageSize;

    private readonly ProfileMix _mix;
    private readonly PageSynthesizer _synth;
    private readonly byte[] _reservoir = new byte[ReservoirPages * PageSize];
    private readonly long[] _pagesByKind = new long[ProfileMix.KindCount];
    private readonly double[] _runWeights = new double[ProfileMix.KindCount];
    private long _reservoirSeen;
    private long _pages;
    private PageKind _runKind;
    private int _runLeft;

    public PageSource(ImageProfile profile, int seed)
    {
        _mix = ProfileMix.For(profile);
        _synth = new PageSynthesizer(seed);
        // A run of kind k covers MeanRuns[k] pages on average, so choosing k with weight
        // share/meanRun gives it `share` of the pages.
        for (var k = 0; k < ProfileMix.KindCount; k++)
        {
            _runWeights[k] = _mix.Shares[k] / _mix.MeanRuns[k];
        }
    }

    public long[] PagesByKind => _pagesByKind;

    public void Fill(Span<byte> block)
    {
        for (var offset = 0; offset < block.Length; offset += PageSize)
        {
            if (_runLeft == 0)
            {
                StartRun();
            }
            _runLeft--;
            var page = block.Slice(offset, PageSize);
            if (_runKind == PageKind.Duplicate)
            {
                _reservoir.AsSpan(_synth.Rng.Next((int)Math.Min(_reservoirSeen, ReservoirPages)) * PageSize, PageSize).CopyTo(page);
            }
            else
            {
                _synth.Write(_runKind, page);
                if (_runKind != PageKind.Zero)
                {
                    Remember(page);
                }
            }
            _pagesByKind[(int)_runKind]++;
            _pages++;
        }
    }

    private void StartRun()
    {
        ref var rng = ref _synth.Rng;
        PageKind kind;
        if (_pages > 0 && rng.Next(2) == 0)
        {
            // Half the runs go to the kind furthest behind its share: keeps each kind within a
            // percent or two of its share even on small images, where long zero runs would
            // otherwise swing the mix by several percent.
            kind = PageKind.Zero;
            var worst = double.MinValue;
            for (var k = 0; k < ProfileMix.KindCount; k++)
            {
                var deficit = (_mix.Shares[k] * _pages) - _pagesByKind[k];
                if (deficit > worst)
                {
                    worst = deficit;
                    kind = (PageKind)k;
                }
            }
        }
        else
        {
            kind = PickWeighted(ref rng);
        }
        if (kind == PageKind.Duplicate && _reservoirSeen == 0)
        {
            kind = PageKind.Structured;
        }
        _runKind = kind;
        _runLeft = rng.NextRunLength(_mix.MeanRuns[(int)kind]);
    }

    private PageKind PickWeighted(ref Xoshiro256 rng)
    {
        var total = 0.0;
        foreach (var w in _runWeights)
        {
            total += w;
        }
        var x = rng.NextDouble() * total;
        for (var k = 0; k < ProfileMix.KindCount; k++)
        {
            x -= _runWeights[k];
            if (x < 0)
            {
                return (PageKind)k;
            }
        }
        return PageKind.Random;
    }

    private void Remember(ReadOnlySpan<byte> page)
    {
        _reservoirSeen++;
        long slot = _reservoirSeen <= ReservoirPages ? _reservoirSeen - 1 : (long)(_synth.Rng.NextDouble() * _reservoirSeen);
        if (slot < ReservoirPages)
        {
            page.CopyTo(_reservoir.AsSpan((int)slot * PageSize, PageSize));
        }
    }
}
