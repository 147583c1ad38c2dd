namespace StreamClone.Store;

/// <summary>
/// A reference to a stored snapshot that keeps it from being evicted (<see cref="ChunkStoreOptions.MaxCacheBytes"/>)
/// until disposed. A writing lease (<see cref="ChunkStore.OpenSnapshotLease"/>) also keeps the snapshot's full
/// size reserved against the cache bound while it is incomplete; a reading lease (<see cref="ChunkStore.AcquireSnapshot"/>)
/// only pins it. Disposing records the use for least-recently-used eviction. Dispose exactly once per lease;
/// extra calls are ignored.
/// </summary>
public sealed class SnapshotLease : IDisposable
{
    private readonly ChunkStore _store;
    private int _released;

    internal SnapshotLease(ChunkStore store, SnapshotAssembly snapshot, bool writing)
    {
        _store = store;
        Snapshot = snapshot;
        IsWriting = writing;
    }

    public SnapshotAssembly Snapshot { get; }

    public bool IsWriting { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            _store.Release(Snapshot, IsWriting, persistUse: true);
        }
    }
}
