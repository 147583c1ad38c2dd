using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using StreamClone.Shared.Diagnostics;

namespace StreamClone.Sink.Store;

/// <summary>
/// Group commit. Put* writes bytes and queues a record; a flush then does, in this order:
/// fsync every object file written since the last flush → append the queued records → fsync the journal.
/// The order is the crash-consistency argument: a record never reaches the disk before the bytes it
/// vouches for, so replay can trust every record without re-hashing. A crash between the steps
/// loses only presence (the chunks are re-sent), never correctness; the AfterDataSync and
/// AfterJournalAppend fault points let tests stop the flush exactly there.
/// </summary>
public sealed partial class SnapshotAssembly
{
    // Replaced only by replay's recovery, before the assembly is published.
    private SafeFileHandle _journal;
    private readonly string _journalPath;

    // Byte length of the durable journal (header + whole records). Appends go exactly here, so the
    // garbage a failed append may leave behind is overwritten by the next one.
    private long _journalLength;

    private readonly Lock _pendingLock = new();
    private List<JournalRecord> _pending = [];
    private long _pendingDataBytes;

    // One flush at a time: appends must not interleave, and a caller's FlushAsync must cover a
    // batch a background flush already took.
    private readonly SemaphoreSlim _flushGate = new(1, 1);

    // Armed when the first record enters an empty queue, so an idle snapshot has no timer traffic.
    private readonly Timer _flushTimer;
    private readonly Lock _scheduleLock = new();
    private Task? _backgroundFlush;
    private bool _stopping;

    // Set when an fsync fails. Linux may mark the dirty pages clean after reporting the error, so a
    // retried fsync can succeed without the bytes being on disk; journaling after that would vouch for
    // data that is not there. Flushing stops for good; reopening the store re-derives presence from the
    // journal, and the un-journaled chunks are re-sent. Reads of present chunks keep working.
    private ChunkStoreIOException? _syncFailure;

    /// <summary>Records put but not yet journaled (lost on a crash).</summary>
    internal int PendingRecords
    {
        get
        {
            lock (_pendingLock)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>Makes every chunk put so far durable and marked present on disk.</summary>
    public ValueTask FlushAsync(CancellationToken ct = default) => FlushCoreAsync(ct);

    private void Enqueue(JournalRecord record, int dataBytes)
    {
        bool first, full;
        lock (_pendingLock)
        {
            first = _pending.Count == 0;
            _pending.Add(record);
            _pendingDataBytes += dataBytes;
            full = _pendingDataBytes >= _store.Options.FlushBytes;
        }
        if (first)
        {
            ArmFlushTimer();
        }
        if (full)
        {
            ScheduleBackgroundFlush();
        }
    }

    private void ArmFlushTimer()
    {
        var interval = _store.Options.FlushInterval;
        if (interval == Timeout.InfiniteTimeSpan)
        {
            return;
        }
        lock (_scheduleLock)
        {
            if (!_stopping)
            {
                _flushTimer.Change(interval, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>
    /// Starts a flush on the thread pool unless one is running: the Put that crossed a threshold
    /// returns at once instead of waiting for two fsyncs. Puts arriving meanwhile queue behind it
    /// and trigger the next one.
    /// </summary>
    private void ScheduleBackgroundFlush()
    {
        lock (_scheduleLock)
        {
            if (_stopping || _backgroundFlush is { IsCompleted: false })
            {
                return;
            }
            _backgroundFlush = Task.Run(BackgroundFlushAsync);
        }
    }

    private async Task BackgroundFlushAsync()
    {
        try
        {
            // Keep going while Puts outpace the flushes: their own trigger was skipped while this ran.
            bool again;
            do
            {
                await FlushCoreAsync(CancellationToken.None);
                lock (_pendingLock)
                {
                    again = _pendingDataBytes >= _store.Options.FlushBytes;
                }
            }
            while (again);
        }
        catch (ObjectDisposedException) when (_closed)
        {
            // Closed under us: dropping the queue is what Close means.
        }
        catch (Exception ex)
        {
            // The records went back on the queue; the timer below retries (e.g. once space is freed).
            // An expected IO failure (a full disk) is one line; its stack says nothing the message does not.
            SinkLog.BackgroundFlushFailed(_store.Logger, SnapshotId, ex.Message);
        }
        // A timer tick that fired while this flush ran was skipped; re-arm so leftovers still get flushed.
        bool leftovers;
        lock (_pendingLock)
        {
            leftovers = _pending.Count > 0;
        }
        if (leftovers)
        {
            ArmFlushTimer();
        }
    }

    private async ValueTask FlushCoreAsync(CancellationToken ct)
    {
        await _flushGate.WaitAsync(ct);
        try
        {
            ThrowIfClosed();
            if (_syncFailure is { } failed)
            {
                throw new ChunkStoreIOException(
                    $"Chunk store: snapshot {SnapshotId} journals nothing more after a failed fsync of '{failed.FilePath}'; reopen the store to resume. ({failed.Message})",
                    failed.FilePath, failed.IsDiskFull, failed);
            }
            List<JournalRecord> batch;
            long dataBytes;
            lock (_pendingLock)
            {
                if (_pending.Count == 0)
                {
                    return;
                }
                batch = _pending;
                dataBytes = _pendingDataBytes;
                _pending = new List<JournalRecord>(batch.Count);
                _pendingDataBytes = 0;
            }

            var stopwatch = Stopwatch.StartNew();
            var synced = 0;
            try
            {
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
                        _syncFailure = StoreIO.Wrap(ex, obj.Path, "syncing");
                        throw _syncFailure;
                    }
                    synced++;
                }
                StoreFaultPoints.Hit(_store.Options, StoreFaultPoints.AfterDataSync);

                var bytes = new byte[batch.Count * JournalRecord.Size];
                for (var i = 0; i < batch.Count; i++)
                {
                    batch[i].Write(bytes.AsSpan(i * JournalRecord.Size, JournalRecord.Size));
                }
                var at = Interlocked.Read(ref _journalLength);
                StoreIO.Write(_journal, _journalPath, bytes, at);
                StoreFaultPoints.Hit(_store.Options, StoreFaultPoints.AfterJournalAppend);
                try
                {
                    StoreIO.Sync(_journal, _journalPath);
                }
                catch (ChunkStoreIOException ex)
                {
                    _syncFailure = ex;
                    throw;
                }
                Interlocked.Exchange(ref _journalLength, at + bytes.Length);
            }
            catch (Exception ex)
            {
                Requeue(batch, dataBytes);
                if (ex is ChunkStoreIOException io)
                {
                    SinkLog.StoreIoFailed(_store.Logger, io.FilePath, "flushing", io.Message);
                }
                throw;
            }
            SinkLog.Flushed(_store.Logger, SnapshotId, batch.Count, dataBytes, synced + 1, stopwatch.ElapsedMilliseconds);
            StreamCloneMetrics.RecordStoreFlush(dataBytes, stopwatch.Elapsed);
        }
        finally
        {
            _flushGate.Release();
        }
    }

    /// <summary>A failed flush puts its batch back in front, so the next flush journals it (in order).</summary>
    private void Requeue(List<JournalRecord> batch, long dataBytes)
    {
        lock (_pendingLock)
        {
            batch.AddRange(_pending);
            _pending = batch;
            _pendingDataBytes += dataBytes;
        }
        // The timer tick that led here is spent; without a new one the batch waits for the next threshold.
        ArmFlushTimer();
    }

    /// <summary>Visits the durable records. The region below the durable length never changes, so no lock is needed.</summary>
    private void ReadDurableRecords(Func<JournalRecord, bool> visit) =>
        JournalFormat.Read(_journal, _journalPath, Interlocked.Read(ref _journalLength), visit, out _);

    /// <summary>Stops the timer, waits for a running flush, and lets any later flush fail as closed.</summary>
    private void StopFlushing()
    {
        Task? running;
        lock (_scheduleLock)
        {
            _stopping = true;
            running = _backgroundFlush;
            _flushTimer.Dispose();
        }
        running?.GetAwaiter().GetResult();
        _flushGate.Wait();
        _closed = true;
        _flushGate.Release();
    }
}
