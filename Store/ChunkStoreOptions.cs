namespace StreamClone.Store;

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

    /// <summary>
    /// The largest snapshot (sum of its objects' sizes) this store takes: a node's policy, not a wire
    /// limit. Objects are laid out at full size as sparse files and a clone's disk and memory must fit
    /// the host that restores it, so 2 TiB covers a large VM (1 TiB of RAM and 1 TiB of disk) while an
    /// offer claiming more is refused before anything is written. `sink --max-snapshot-bytes` raises it.
    /// </summary>
    public long MaxSnapshotBytes { get; set; } = 2L << 40;

    /// <summary>
    /// Free space a new snapshot must leave on the store's filesystem beyond its own full size:
    /// journals, manifests and the filesystem's metadata need room, and a disk that fills mid-stream
    /// fails fsyncs instead of refusing cleanly up front. 1 GiB is a few journals of a 4 GiB
    /// snapshot many times over.
    /// </summary>
    public long FreeSpaceMarginBytes { get; set; } = 1L << 30;

    /// <summary>
    /// The cache bound of a relay's store, in bytes: null (the default, what a sink uses) keeps every
    /// snapshot for good. With a bound, opening a snapshot (new or resumed) first makes room for its
    /// full size by evicting whole snapshots nobody has open, least recently used first, and refuses
    /// the offer (<see cref="Shared.Protocol.ProtocolError.OfferRefused"/>) when even that is not enough.
    /// What counts against it is <see cref="ChunkStore.CacheBytes"/>; a stored copy under a
    /// re-used id with a different layout is replaced instead of refused (the upstream is the authority
    /// over a cache, while a sink's snapshot is a clone's base and is never dropped behind its back).
    /// </summary>
    public long? MaxCacheBytes { get; set; }

    /// <summary>Test hook replacing the free-space query (statvfs) of the store directory.</summary>
    internal Func<string, long>? FreeSpaceProbe { get; set; }

    /// <summary>Test hook called at each <see cref="StoreFaultPoints"/> point; throwing aborts the operation there.</summary>
    internal Action<string>? FaultHook { get; set; }

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(FlushBytes, 0, nameof(FlushBytes));
        ArgumentOutOfRangeException.ThrowIfLessThan(ManifestHashesPerSegment, 1, nameof(ManifestHashesPerSegment));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ManifestHashesPerSegment, Shared.Model.ManifestObject.MaxHashesPerSegment, nameof(ManifestHashesPerSegment));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(MaxSnapshotBytes, 0, nameof(MaxSnapshotBytes));
        ArgumentOutOfRangeException.ThrowIfNegative(FreeSpaceMarginBytes, nameof(FreeSpaceMarginBytes));
        if (MaxCacheBytes is { } cache)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(cache, 0, nameof(MaxCacheBytes));
        }
        if (FlushInterval != Timeout.InfiniteTimeSpan && FlushInterval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(FlushInterval), FlushInterval, "Must be positive or Timeout.InfiniteTimeSpan.");
        }
    }
}
