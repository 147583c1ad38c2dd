using Microsoft.Extensions.Logging;

namespace StreamClone.Store;

/// <summary>
/// Store log events, ids 3000-3099 (the sink's session events, 3100+, are in Store/Upstream/UpstreamLog.cs). Never reuse an id:
/// retire it with a "Reserved" comment so old logs stay searchable.
/// </summary>
internal static partial class StoreLog
{
    [LoggerMessage(EventId = 3000, Level = LogLevel.Information,
        Message = "Chunk store {Directory} opened: {Snapshots} snapshot(s), {Chunks} chunk(s) present, {UniqueHashes} unique hash(es), replay took {ElapsedMs} ms")]
    public static partial void StoreOpened(ILogger logger, string directory, int snapshots, long chunks, int uniqueHashes, long elapsedMs);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Debug,
        Message = "Snapshot {SnapshotId} replayed: {Records} journal record(s), {Present}/{Total} chunk(s) present, complete={Complete}")]
    public static partial void SnapshotReplayed(ILogger logger, string snapshotId, long records, long present, long total, bool complete);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning,
        Message = "Journal {Path}: ignoring {DiscardedBytes} byte(s) after record {ValidRecords} ({Reason}); those chunks will be re-sent")]
    public static partial void JournalTailDiscarded(ILogger logger, string path, long validRecords, long discardedBytes, string reason);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Information,
        Message = "Snapshot {SnapshotId} created: {Objects} object(s), {TotalChunks} chunk(s)")]
    public static partial void SnapshotCreated(ILogger logger, string snapshotId, int objects, long totalChunks);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Information,
        Message = "Snapshot {SnapshotId} resumed: {Present}/{Total} chunk(s) already present")]
    public static partial void SnapshotResumed(ILogger logger, string snapshotId, long present, long total);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Debug,
        Message = "Snapshot {SnapshotId} flushed: {Records} record(s), {DataBytes} data byte(s), {Files} file(s) synced in {ElapsedMs} ms")]
    public static partial void Flushed(ILogger logger, string snapshotId, int records, long dataBytes, int files, long elapsedMs);

    // Warning: the records stay queued and the next flush retries; if the store stays unwritable the
    // session fails and logs that one cause at Error.
    [LoggerMessage(EventId = 3006, Level = LogLevel.Warning,
        Message = "Snapshot {SnapshotId}: background flush failed ({Reason}); the records stay queued for the next flush")]
    public static partial void BackgroundFlushFailed(ILogger logger, string snapshotId, string reason);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Information,
        Message = "Snapshot {SnapshotId} complete: {TotalChunks} chunk(s), manifest written")]
    public static partial void SnapshotCompleted(ILogger logger, string snapshotId, long totalChunks);

    [LoggerMessage(EventId = 3008, Level = LogLevel.Error,
        Message = "Stored chunk {Hash} at {Path} chunk {Index} no longer matches its hash; not copying it and dropping it from the inventory")]
    public static partial void KnownChunkDamaged(ILogger logger, string hash, string path, long index);

    [LoggerMessage(EventId = 3009, Level = LogLevel.Warning,
        Message = "Removing {Path}: snapshot creation was interrupted before its offer was written")]
    public static partial void UnfinishedSnapshotRemoved(ILogger logger, string path);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Error,
        Message = "Verify: snapshot {SnapshotId} object {ObjectId} chunk {Index} does not match its journaled hash")]
    public static partial void VerifyMismatch(ILogger logger, string snapshotId, int objectId, long index);

    // Debug: the exception goes on to the session, which logs the one line a failure gets.
    [LoggerMessage(EventId = 3011, Level = LogLevel.Debug,
        Message = "Chunk store IO failed on {Path} while {Operation}: {Reason}")]
    public static partial void StoreIoFailed(ILogger logger, string path, string operation, string reason);

    [LoggerMessage(EventId = 3012, Level = LogLevel.Information,
        Message = "Verify of {Directory}: {Checked} chunk(s) checked, {Mismatches} mismatch(es)")]
    public static partial void VerifyFinished(ILogger logger, string directory, long @checked, int mismatches);

    // 3060-3069: the relay's cache (bound, eviction, stale copies, serving reads).
    [LoggerMessage(EventId = 3060, Level = LogLevel.Information,
        Message = "Snapshot {SnapshotId} evicted from the cache ({Reason}): {Bytes} byte(s) freed, {Hashes} hash(es) left the index, cache now {CacheBytes} of {MaxCacheBytes} byte(s)")]
    public static partial void SnapshotEvicted(ILogger logger, string snapshotId, string reason, long bytes, int hashes, long cacheBytes, long maxCacheBytes);

    [LoggerMessage(EventId = 3061, Level = LogLevel.Warning,
        Message = "Snapshot {SnapshotId}: the stored copy does not match the new offer ({Difference}); replacing it")]
    public static partial void SnapshotReplaced(ILogger logger, string snapshotId, string difference);

    [LoggerMessage(EventId = 3062, Level = LogLevel.Error,
        Message = "Snapshot {SnapshotId} object {ObjectId} chunk {Index} does not match its hash {Hash} on read; dropped (absent, out of the index) so it is fetched again, never served")]
    public static partial void StoredChunkDropped(ILogger logger, string snapshotId, int objectId, long index, string hash);

    [LoggerMessage(EventId = 3063, Level = LogLevel.Warning,
        Message = "Could not remove evicted snapshot files at {Path}: {Reason}; they are removed on the next open")]
    public static partial void EvictedFilesLeft(ILogger logger, string path, string reason);

    // 3050-3059: journal damage and recovery (a block of its own so parallel additions above do not collide).
    [LoggerMessage(EventId = 3050, Level = LogLevel.Error, Message = "Snapshot {SnapshotId}: {Damage}")]
    public static partial void JournalDamaged(ILogger logger, string snapshotId, string damage);

    [LoggerMessage(EventId = 3051, Level = LogLevel.Warning,
        Message = "Snapshot {SnapshotId} has a manifest but only {Present} of {Total} chunks are present: it is not complete until the missing chunks are received again")]
    public static partial void ManifestWithMissingChunks(ILogger logger, string snapshotId, long present, long total);
}
