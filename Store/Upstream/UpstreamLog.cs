using Microsoft.Extensions.Logging;

namespace StreamClone.Store.Upstream;

/// <summary>Events of the pulling session: ids 3100-3149 (3000-3099 belong to the store, 3150-3199 to the sink's reattach loop), never reused.</summary>
internal static partial class UpstreamLog
{
    [LoggerMessage(3101, LogLevel.Information, "Sink session {SessionId} with {Source}: snapshot {SnapshotId} offered ({Objects} objects, {Bytes} bytes), {Present}/{Total} chunks already here, inventory of {Inventory} hashes sent")]
    public static partial void SessionStarted(ILogger logger, string sessionId, string source, string snapshotId, int objects, long bytes, long present, long total, int inventory);

    [LoggerMessage(3102, LogLevel.Information, "Snapshot {SnapshotId} stored: {Chunks} chunks verified, {WireBytes} bytes received in {Seconds:F2} s")]
    public static partial void SnapshotStored(ILogger logger, string snapshotId, long chunks, long wireBytes, double seconds);

    [LoggerMessage(3103, LogLevel.Error, "Sink session {SessionId} failed: {Reason} Every chunk verified before this point is kept.")]
    public static partial void SessionFailed(ILogger logger, string sessionId, string reason);

    [LoggerMessage(3104, LogLevel.Warning, "Chunk {Hash} listed as known could not be placed at object {ObjectId} chunk {Index}; fetching it again")]
    public static partial void KnownChunkRefetch(ILogger logger, string hash, int objectId, long index);

    [LoggerMessage(3105, LogLevel.Information, "Sink session {SessionId}: multicast {Group}:{Port} joined on {Interface}, batches from {FirstSequence} on")]
    public static partial void MulticastJoined(ILogger logger, string sessionId, string group, int port, string @interface, long firstSequence);

    [LoggerMessage(3106, LogLevel.Warning, "Sink session {SessionId}: multicast ended, TCP from batch {Resume}: {Detail}")]
    public static partial void MulticastLeft(ILogger logger, string sessionId, long resume, string detail);

    [LoggerMessage(3107, LogLevel.Information, "Sink session {SessionId}: multicast ended: {Accepted} datagrams accepted, {Lost} lost (NACKed), dropped: {Dropped}")]
    public static partial void MulticastSummary(ILogger logger, string sessionId, long accepted, long lost, string dropped);
}
