using Microsoft.Extensions.Logging;

namespace StreamClone.Shared;

/// <summary>Log events of Shared: ids 4000-4999, never reused.</summary>
internal static partial class SharedLog
{
    [LoggerMessage(4001, LogLevel.Debug, "Connection {Name} closed: {Reason}")]
    public static partial void ConnectionClosed(ILogger logger, string name, string reason);
}
