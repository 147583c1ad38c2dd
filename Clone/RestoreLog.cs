using Microsoft.Extensions.Logging;

namespace StreamClone.Clone;

/// <summary>Restore events of the Sink: ids 3200-3299.</summary>
internal static partial class RestoreLog
{
    [LoggerMessage(3201, LogLevel.Information, "Clone of snapshot {SnapshotId} running {Milliseconds:F0} ms after the restore began ({Pages} pages streamed into it)")]
    public static partial void CloneStarted(ILogger logger, string snapshotId, double milliseconds, long pages);
}
