using Microsoft.Extensions.Logging;

namespace StreamClone.Source.Live;

/// <summary>Live-VM events of the Source: ids 1100-1199 (within the Source's 1xxx).</summary>
internal static partial class LiveLog
{
    [LoggerMessage(1101, LogLevel.Information, "Live snapshot stream complete: {Bytes} bytes parsed, {Pages} pages, QEMU downtime {DowntimeMs} ms")]
    public static partial void SnapshotCompleted(ILogger logger, long bytes, long pages, long downtimeMs);
}
