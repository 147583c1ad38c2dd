using Microsoft.Extensions.Logging;

namespace StreamClone.Source;

/// <summary>Log events of the Source: ids 1000-1999, never reused.</summary>
internal static partial class SourceLog
{
    [LoggerMessage(1001, LogLevel.Information, "Source listening on {EndPoint}, offering snapshot {SnapshotId} ({Objects} objects, {Bytes} bytes)")]
    public static partial void Listening(ILogger logger, string endPoint, string snapshotId, int objects, long bytes);

    // 1002-1007 (session started, completed, failed, refused, demand lane, demand served) are logged by the
    // downstream server the source serves through (Shared/Fanout/FanoutLog.cs), under the same ids.
}
