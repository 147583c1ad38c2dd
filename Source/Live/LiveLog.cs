using Microsoft.Extensions.Logging;

namespace StreamClone.Source.Live;

/// <summary>Live-VM events of the Source: ids 1100-1199 (within the Source's 1xxx).</summary>
internal static partial class LiveLog
{
    [LoggerMessage(1101, LogLevel.Information, "Live snapshot stream complete: {Bytes} bytes parsed, {Pages} pages, QEMU downtime {DowntimeMs} ms")]
    public static partial void SnapshotCompleted(ILogger logger, long bytes, long pages, long downtimeMs);

    [LoggerMessage(1102, LogLevel.Error, "{Message}")]
    public static partial void SnapshotFailed(ILogger logger, string message);

    [LoggerMessage(1103, LogLevel.Warning, "After the failed snapshot the VM could not be fully recovered (migration ended, resumed): {Message}")]
    public static partial void RecoveryFailed(ILogger logger, string message);

    [LoggerMessage(1104, LogLevel.Warning, "The disk snapshot view could not be fully removed from the VM (its own disks are untouched): {Message}")]
    public static partial void TeardownFailed(ILogger logger, string message);
}
