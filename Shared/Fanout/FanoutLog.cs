using Microsoft.Extensions.Logging;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// Log events of the downstream server. Ids 1002-1007 are the Source's events of before (the source serves
/// through this server now; log readers keep their ids); new ones take 4100-4199 of Shared's range. Never reused.
/// </summary>
internal static partial class FanoutLog
{
    [LoggerMessage(1002, LogLevel.Information, "Session {SessionId} from {Peer}: sink holds {Known} chunks already")]
    public static partial void SessionStarted(ILogger logger, string sessionId, string peer, long known);

    [LoggerMessage(1003, LogLevel.Information, "Session {SessionId} done: {InputBytes} bytes in {Seconds:F2} s, {WireBytes} on the wire, {Demand} demand requests")]
    public static partial void SessionCompleted(ILogger logger, string sessionId, long inputBytes, double seconds, long wireBytes, long demand);

    [LoggerMessage(1004, LogLevel.Error, "Session {SessionId} failed: {Reason}")]
    public static partial void SessionFailed(ILogger logger, string sessionId, string reason);

    [LoggerMessage(1005, LogLevel.Warning, "Connection from {Peer} refused: {Reason}")]
    public static partial void ConnectionRefused(ILogger logger, string peer, string reason);

    [LoggerMessage(1006, LogLevel.Debug, "Session {SessionId}: demand lane attached from {Peer}")]
    public static partial void DemandLaneAttached(ILogger logger, string sessionId, string peer);

    [LoggerMessage(1007, LogLevel.Trace, "Demand request {RequestId}: object {ObjectId} chunks {First}+{Count}")]
    public static partial void DemandServed(ILogger logger, long requestId, int objectId, long first, int count);
}
