using System.Buffers;
using System.Diagnostics;
using Microsoft.Win32.SafeHandles;

using StreamClone.Shared.Diagnostics;

namespace StreamClone.Store.Journal;

/// <summary>
/// An append-only journal of <see cref="JournalRecord"/>s with group commit: records are appended in
/// memory (<see cref="Append"/>, cheap, any thread) and made durable together by a flush, on demand
/// (<see cref="FlushAsync"/>) or in the background once <see cref="GroupCommitOptions.FlushBytes"/>
/// data bytes are pending or <see cref="GroupCommitOptions.FlushInterval"/> after the first one.
/// </summary>
/// <remarks>
/// <para>
/// <b>Invariant: a record is durable only after the bytes it vouches for are.</b> A flush does, in this
/// order: take the pending records (appends from here on go into the next group) → the owner's
/// <see cref="GroupCommitOptions.SyncData"/> (fsync of every data file written since the last flush) →
/// write the records at the end of the journal → fsync the journal. So a record never reaches the disk
/// before its chunk's bytes, and replay can trust every record without re-hashing: a chunk is "present"
/// on disk only once its bytes are durable. A crash between the steps loses only presence (the chunks
/// are re-sent), never correctness; the <see cref="StoreFaultPoints.AfterDataSync"/> and
/// <see cref="StoreFaultPoints.AfterJournalAppend"/> points let tests stop a flush exactly there.
/// </para>
/// <para>
/// Flushes run one at a time and in append order: a failed flush puts its group back in front of the
/// queue, so the journal holds records in the order they were appended. A failed fsync (of data or of
/// the journal) stops flushing for good: Linux may mark the dirty pages clean after reporting the
/// error, so a retried fsync can succeed without the bytes being on disk, and journaling after that
/// would vouch for data that is not there. Reopening re-derives presence from the journal.
/// </para>
/// <para>
/// Opening: <see cref="Create"/> writes a fresh journal (header only, synced) and is ready for appends;
/// <see cref="Open"/> must be followed by <see cref="Replay"/>, which finds the records that are
/// trusted, cuts a torn tail and reports damage (see GroupCommitJournal.Replay.cs). Files are 0600.
/// </para>
/// </remarks>
internal sealed partial class GroupCommitJournal : IDisposable
{
    private readonly GroupCommitOptions _options;
    private readonly bool _readOnly;

    // Replaced only by a rebuild (damage recovery), before the owner is published.
    private SafeFileHandle _handle;

    // Byte length of the durable journal (header + whole records). Appends go exactly here, so the
    // garbage a failed append may leave behind is overwritten by the next one.
    private long _durableLength;

    // Open() leaves the journal unreplayed; damage found by Replay leaves it needing a rebuild. Either
    // way the durable length is not yet the place to append at.
    private volatile bool _mayAppend;

    private readonly Lock _pendingLock = new();
    private List<JournalRecord> _pending = [];
    private long _pendingDataBytes;

    // One flush at a time: appends to the file must not interleave, and a caller's FlushAsync must
    // cover a group a background flush already took (it waits for that flush, then takes the rest).
    private readonly SemaphoreSlim _flushGate = new(1, 1);

    // Set when an fsync fails (see the remarks): flushing stops for good.
    private ChunkStoreIOException? _syncFailure;
    private volatile bool _closed;

    private GroupCommitJournal(string path, SafeFileHandle handle, GroupCommitOptions options, bool readOnly, long durableLength, bool mayAppend)
    {
        options.Validate();
        FilePath = path;
        _handle = handle;
        _options = options;
        _readOnly = readOnly;
        _durableLength = durableLength;
        _mayAppend = mayAppend;
        _flushTimer = new Timer(static state => ((GroupCommitJournal)state!).ScheduleBackgroundFlush(), this,
            Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public string FilePath { get; }

    /// <summary>Byte length of the durable part (header and the records flushed or replayed).</summary>
    public long DurableLength => Interlocked.Read(ref _durableLength);

    /// <summary>Records appended but not yet durable (lost on a crash).</summary>
    public int PendingRecords
    {
        get
        {
            lock (_pendingLock)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>
    /// Creates (or replaces) the journal at <paramref name="path"/>: header written and fsynced, 0600.
    /// The caller syncs the directory when the file's name must survive a crash.
    /// </summary>
    public static GroupCommitJournal Create(string path, GroupCommitOptions options)
    {
        var handle = StoreIO.OpenReadWrite(path, FileMode.Create);
        try
        {
            Span<byte> header = stackalloc byte[JournalFormat.HeaderSize];
            JournalFormat.WriteHeader(header);
            StoreIO.Write(handle, path, header, 0);
            StoreIO.Sync(handle, path);
            return new GroupCommitJournal(path, handle, options, readOnly: false, JournalFormat.HeaderSize, mayAppend: true);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens an existing journal; <see cref="Replay"/> comes next. <paramref name="readOnly"/> opens it
    /// O_RDONLY: replay then reports a torn tail or damage without changing a byte, and appends are refused.
    /// </summary>
    public static GroupCommitJournal Open(string path, bool readOnly, GroupCommitOptions options)
    {
        var handle = readOnly ? StoreIO.OpenReadOnly(path) : StoreIO.OpenReadWrite(path, FileMode.Open);
        try
        {
            return new GroupCommitJournal(path, handle, options, readOnly, 0, mayAppend: false);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Queues a record for the next group commit. <paramref name="dataBytes"/> is what the owner wrote for
    /// it (0 for a zero chunk), counted towards <see cref="GroupCommitOptions.FlushBytes"/>. The bytes it
    /// vouches for must already be written (not synced: the flush syncs them first).
    /// </summary>
    public void Append(JournalRecord record, int dataBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dataBytes);
        if (_readOnly || !_mayAppend)
        {
            ThrowIfMayNotAppend();
        }
        bool first, full;
        lock (_pendingLock)
        {
            first = _pending.Count == 0;
            _pending.Add(record);
            _pendingDataBytes += dataBytes;
            full = _pendingDataBytes >= _options.FlushBytes;
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

    /// <summary>
    /// Group commit of every record appended before the call (and of any appended while it waits for a
    /// running flush): owner's data sync → records written → journal fsync. On failure the records stay
    /// queued, in order, for the next flush; after a failed fsync every later flush fails.
    /// </summary>
    public ValueTask FlushAsync(CancellationToken ct = default) => FlushCoreAsync(ct);

    /// <summary>
    /// Visits the durable records in file order (stopping at a record whose CRC fails, which a read-only
    /// journal beside a writer can show). The region below the durable length never changes, so this
    /// runs beside appends and flushes without a lock.
    /// </summary>
    public void ReadDurable(Action<JournalRecord> visit)
    {
        ArgumentNullException.ThrowIfNull(visit);
        Scan(DurableLength, (_, valid, record) =>
        {
            if (valid)
            {
                visit(record);
            }
            return valid;
        });
    }

    /// <summary>Stops the timer, waits for a running flush and closes the file; records still pending are dropped.</summary>
    public void Dispose()
    {
        StopFlushing();
        _handle.Dispose();
    }

    private async ValueTask FlushCoreAsync(CancellationToken ct)
    {
        await _flushGate.WaitAsync(ct);
        try
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (_syncFailure is { } failed)
            {
                throw new ChunkStoreIOException(
                    $"Chunk store: snapshot {_options.Owner} journals nothing more after a failed fsync of '{failed.FilePath}'; reopen the store to resume. ({failed.Message})",
                    failed.FilePath, failed.IsDiskFull, failed);
            }
            List<JournalRecord> group;
            long dataBytes;
            lock (_pendingLock)
            {
                if (_pending.Count == 0)
                {
                    return;
                }
                group = _pending;
                dataBytes = _pendingDataBytes;
                _pending = new List<JournalRecord>(group.Count);
                _pendingDataBytes = 0;
            }

            var stopwatch = Stopwatch.StartNew();
            int synced;
            try
            {
                synced = SyncData();
                StoreFaultPoints.Hit(_options.FaultHook(), StoreFaultPoints.AfterDataSync);
                var at = DurableLength;
                var end = WriteRecords(group, at);
                StoreFaultPoints.Hit(_options.FaultHook(), StoreFaultPoints.AfterJournalAppend);
                try
                {
                    StoreIO.Sync(_handle, FilePath);
                }
                catch (ChunkStoreIOException ex)
                {
                    _syncFailure = ex;
                    throw;
                }
                Interlocked.Exchange(ref _durableLength, end);
            }
            catch (Exception ex)
            {
                Requeue(group, dataBytes);
                if (ex is ChunkStoreIOException io)
                {
                    StoreLog.StoreIoFailed(_options.Logger, io.FilePath, "flushing", io.Message);
                }
                throw;
            }
            StreamCloneMetrics.RecordStoreFlush(dataBytes, stopwatch.Elapsed);
            StoreLog.Flushed(_options.Logger, _options.Owner, group.Count, dataBytes, synced + 1, stopwatch.ElapsedMilliseconds);
        }
        finally
        {
            _flushGate.Release();
        }
    }

    /// <summary>The owner's data sync; an IOException from it is a failed fsync, which stops flushing for good.</summary>
    private int SyncData()
    {
        try
        {
            return _options.SyncData();
        }
        catch (IOException ex)
        {
            _syncFailure = StoreIO.Wrap(ex, FilePath, "syncing the data journaled by");
            if (ReferenceEquals(_syncFailure, ex))
            {
                throw;
            }
            throw _syncFailure;
        }
    }

    /// <summary>Writes the group at <paramref name="at"/> in blocks of whole records; returns the new end.</summary>
    private long WriteRecords(List<JournalRecord> group, long at)
    {
        var block = ArrayPool<byte>.Shared.Rent(Math.Min(group.Count, JournalFormat.RecordsPerBlock) * JournalRecord.Size);
        try
        {
            var position = at;
            for (var first = 0; first < group.Count; first += JournalFormat.RecordsPerBlock)
            {
                var count = Math.Min(JournalFormat.RecordsPerBlock, group.Count - first);
                for (var i = 0; i < count; i++)
                {
                    group[first + i].Write(block.AsSpan(i * JournalRecord.Size, JournalRecord.Size));
                }
                StoreIO.Write(_handle, FilePath, block.AsSpan(0, count * JournalRecord.Size), position);
                position += count * JournalRecord.Size;
            }
            return position;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(block);
        }
    }

    /// <summary>A failed flush puts its group back in front, so the next flush journals it (in order).</summary>
    private void Requeue(List<JournalRecord> group, long dataBytes)
    {
        lock (_pendingLock)
        {
            group.AddRange(_pending);
            _pending = group;
            _pendingDataBytes += dataBytes;
        }
        // The timer tick that led here is spent; without a new one the group waits for the next threshold.
        ArmFlushTimer();
    }

    private void ThrowIfMayNotAppend()
    {
        if (_readOnly)
        {
            throw new InvalidOperationException($"Journal '{FilePath}' is open read-only.");
        }
        if (!_mayAppend)
        {
            throw new InvalidOperationException($"Journal '{FilePath}' takes no records before it is replayed (and rebuilt, if replay found damage).");
        }
    }

    /// <summary>
    /// Visits every whole record from the header up to <paramref name="length"/> with its file offset and
    /// whether its CRC holds (a default record when it does not), until <paramref name="visit"/> returns
    /// false. Reads go in blocks of <see cref="JournalFormat.RecordsPerBlock"/> records, so no length
    /// read from or claimed by the file sizes a buffer. Returns the end of the last whole record visited
    /// (where the scan stopped, when the visitor stopped it).
    /// </summary>
    private long Scan(long length, Func<long, bool, JournalRecord, bool> visit)
    {
        var block = ArrayPool<byte>.Shared.Rent(JournalFormat.RecordsPerBlock * JournalRecord.Size);
        try
        {
            long position = JournalFormat.HeaderSize;
            while (position < length)
            {
                var want = (int)Math.Min(JournalFormat.RecordsPerBlock * JournalRecord.Size, length - position);
                var got = StoreIO.ReadFully(_handle, FilePath, block.AsSpan(0, want), position);
                var whole = got / JournalRecord.Size * JournalRecord.Size;
                for (var offset = 0; offset < whole; offset += JournalRecord.Size)
                {
                    var valid = JournalRecord.TryRead(block.AsSpan(offset, JournalRecord.Size), out var record);
                    if (!visit(position + offset, valid, record))
                    {
                        return position + offset;
                    }
                }
                position += whole;
                if (whole < want)
                {
                    break;
                }
            }
            return position;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(block);
        }
    }
}

/// <summary>How a <see cref="GroupCommitJournal"/> commits, and what it tells its owner.</summary>
internal sealed class GroupCommitOptions
{
    /// <summary>Whose journal this is (a snapshot id), in log events and error messages.</summary>
    public required string Owner { get; init; }

    public required Microsoft.Extensions.Logging.ILogger Logger { get; init; }

    /// <summary>
    /// Step one of every flush: fsync every data file written since the last flush; returns how many were
    /// synced (for the log). An IOException means an fsync failed: the journal then flushes nothing more.
    /// </summary>
    public Func<int> SyncData { get; init; } = static () => 0;

    /// <summary>Flush in the background once this many data bytes are pending (see <see cref="ChunkStoreOptions.FlushBytes"/>).</summary>
    public long FlushBytes { get; init; } = long.MaxValue;

    /// <summary>Flush this long after the first pending record; <see cref="Timeout.InfiniteTimeSpan"/> turns the timer off.</summary>
    public TimeSpan FlushInterval { get; init; } = Timeout.InfiniteTimeSpan;

    /// <summary>Read at every <see cref="StoreFaultPoints"/> point (a delegate, so tests can arm it after opening).</summary>
    public Func<Action<string>?> FaultHook { get; init; } = static () => null;

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(FlushBytes, 0, nameof(FlushBytes));
        if (FlushInterval != Timeout.InfiniteTimeSpan && FlushInterval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(FlushInterval), FlushInterval, "Must be positive or Timeout.InfiniteTimeSpan.");
        }
    }
}
