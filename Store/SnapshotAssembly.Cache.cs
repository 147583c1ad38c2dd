namespace StreamClone.Store;

/// <summary>
/// What the store's cache policy (<see cref="ChunkStore"/>, ChunkStore.Cache.cs) keeps per snapshot. Every
/// field here is read and written under the store's snapshot lock only.
/// </summary>
public sealed partial class SnapshotAssembly
{
    /// <summary>Leases and internal copy references held now: a snapshot with any is never evicted.</summary>
    internal int References { get; set; }

    /// <summary>Writing leases held now: while incomplete, the snapshot is charged its full size.</summary>
    internal int Writers { get; set; }

    /// <summary>Last open or read, in store clock ticks (UTC ticks, strictly increasing within a store).</summary>
    internal long LastUsedTicks { get; set; }

    /// <summary>Set once, when the store evicts it: its files are gone and its index entries removed.</summary>
    internal bool IsEvicted { get; set; }

    /// <summary>The sum of its objects' sizes: the most its data can take on disk.</summary>
    public long TotalBytes => _objects.Sum(o => o.Info.Size);

    /// <summary>
    /// What it costs the cache bound: the data bytes of its present chunks plus its journal
    /// (<see cref="BytesOnDisk"/>), or its full size while someone fills it (so a growing snapshot
    /// never pushes the store over the bound: its room was made when it was opened).
    /// </summary>
    internal long ChargedBytes => Writers > 0 && !IsComplete
        ? Math.Max(TotalBytes + _journal.DurableLength, BytesOnDisk)
        : BytesOnDisk;
}
