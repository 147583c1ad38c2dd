namespace StreamClone.Sink.Store;

/// <summary>
/// Group-commit thresholds. Each flush costs an fsync of every object file written since the last
/// one plus an fsync of the journal (milliseconds on SSD, tens on spinning disks); chunks put but not
/// yet flushed are lost on a crash and simply re-sent. The thresholds trade those two costs.
/// </summary>
public sealed class ChunkStoreOptions
{
    /// <summary>
    /// Flush once this many data bytes are pending. 32 MiB is ~0.27 s of a saturated 1 GbE link
    /// (~2.7 s at 100 Mbit/s): a crash re-sends at most that, while a ~5 ms fsync pair per 32 MiB
    /// costs under 2% of disk time even at 1 GB/s.
    /// </summary>
    public long FlushBytes { get; set; } = 32L << 20;

    /// <summary>
    /// Flush at most this long after the first pending record, so a slow or idle stream still
    /// becomes durable promptly: 200 ms bounds re-sending after a crash to a fraction of a second of
    /// traffic, and 5 flushes a second is negligible IO. <see cref="Timeout.InfiniteTimeSpan"/>
    /// disables the timer (tests that count what a crash keeps).
    /// </summary>
    public TimeSpan FlushInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Hashes per segment of a manifest's hash lists (<see cref="Shared.Model.ManifestObject.HashesPerSegment"/>).
    /// Internal: only tests change it, to cross segment boundaries with a few chunks.
    /// </summary>
    internal int ManifestHashesPerSegment { get; set; } = Shared.Model.ManifestObject.DefaultHashesPerSegment;

    /// <summary>Test hook called at each <see cref="StoreFaultPoints"/> point; throwing aborts the operation there.</summary>
    internal Action<string>? FaultHook { get; set; }

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(FlushBytes, 0, nameof(FlushBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(ManifestHashesPerSegment, 1, nameof(ManifestHashesPerSegment));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ManifestHashesPerSegment, Shared.Model.ManifestObject.MaxHashesPerSegment, nameof(ManifestHashesPerSegment));
        if (FlushInterval != Timeout.InfiniteTimeSpan && FlushInterval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(FlushInterval), FlushInterval, "Must be positive or Timeout.InfiniteTimeSpan.");
        }
    }
}
