using Microsoft.Extensions.Logging;

namespace StreamClone.Relay;

/// <summary>Relay events: ids 2000-2099, never reused.</summary>
internal static partial class RelayLog
{
    [LoggerMessage(2001, LogLevel.Information, "Relay listening on {EndPoint}, pulling from {Upstreams}, cache {Cache} ({CacheBytes} bytes)")]
    public static partial void Listening(ILogger logger, string endPoint, string upstreams, string cache, long cacheBytes);

    [LoggerMessage(2002, LogLevel.Information, "Relay forwards snapshot {SnapshotId} ({Objects} objects, {Bytes} bytes); reattach hints for children: {Hints}")]
    public static partial void Forwarding(ILogger logger, string snapshotId, int objects, long bytes, string hints);

    [LoggerMessage(2003, LogLevel.Information, "Relay restarted over snapshot {SnapshotId}: {Present}/{Total} chunks in the cache, {Hashes} of them checked against the journal's hashes before serving")]
    public static partial void Resumed(ILogger logger, string snapshotId, long present, long total, long hashes);

    [LoggerMessage(2004, LogLevel.Information, "Relay has snapshot {SnapshotId} complete: {Batches} batches in its log")]
    public static partial void UpstreamComplete(ILogger logger, string snapshotId, long batches);

    [LoggerMessage(2005, LogLevel.Error, "Relay lost its upstream for good: {Reason}; children are told and reattach to their hints")]
    public static partial void UpstreamLost(ILogger logger, string reason);

    [LoggerMessage(2006, LogLevel.Debug, "Relay demand for object {ObjectId} chunks {FirstIndex}+{Count}: {Outcome}")]
    public static partial void Demand(ILogger logger, int objectId, long firstIndex, int count, string outcome);

    [LoggerMessage(2007, LogLevel.Warning, "Chunk {ObjectId}:{Index} is not in the cache or failed its hash there; fetching it from upstream (bytes that fail are never served)")]
    public static partial void CachedChunkRefetched(ILogger logger, int objectId, long index);
}
