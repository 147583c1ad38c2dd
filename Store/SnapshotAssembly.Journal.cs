using StreamClone.Store.Journal;

namespace StreamClone.Store;

/// <summary>
/// Presence on disk goes through the snapshot's <see cref="GroupCommitJournal"/>: Put* writes bytes and
/// appends a record; a flush (on demand or in the background) then fsyncs the object files written
/// since the last one (<see cref="SyncDirtyObjects"/>, the journal's first step) before the records
/// are written and the journal fsynced. So a chunk is "present" on disk only once its bytes are
/// durable, and replay trusts every record (see the journal's remarks for the crash argument).
/// </summary>
public sealed partial class SnapshotAssembly
{
    // Created or opened by the constructor; damage recovery rebuilds its file in place (Replay).
    private readonly GroupCommitJournal _journal;

    /// <summary>Records put but not yet journaled (lost on a crash).</summary>
    internal int PendingRecords => _journal.PendingRecords;

    /// <summary>Makes every chunk put so far durable and marked present on disk.</summary>
    public ValueTask FlushAsync(CancellationToken ct = default) => _journal.FlushAsync(ct);

    private GroupCommitOptions JournalOptions() => new()
    {
        Owner = SnapshotId,
        Logger = _store.Logger,
        SyncData = SyncDirtyObjects,
        FlushBytes = _store.Options.FlushBytes,
        FlushInterval = _store.Options.FlushInterval,
        // Read at each point: tests arm the hook after the snapshot is open.
        FaultHook = () => _store.Options.FaultHook,
    };

    /// <summary>
    /// A flush's first step: fsync every object file written since the last flush took its dirty flag.
    /// A failed fsync puts the flag back and throws (the journal then stops for good).
    /// </summary>
    private int SyncDirtyObjects()
    {
        var synced = 0;
        foreach (var obj in _objects)
        {
            if (!obj.TakeDirty())
            {
                continue;
            }
            try
            {
                StoreFaultPoints.Hit(_store.Options, StoreFaultPoints.DataSync);
                StoreIO.Sync(obj.Handle, obj.Path);
            }
            catch (IOException ex)
            {
                obj.MarkDirty();
                throw StoreIO.Wrap(ex, obj.Path, "syncing");
            }
            synced++;
        }
        return synced;
    }

    /// <summary>Visits the durable records (they never change, so this runs beside puts and flushes).</summary>
    private void ReadDurableRecords(Action<JournalRecord> visit) => _journal.ReadDurable(visit);
}
