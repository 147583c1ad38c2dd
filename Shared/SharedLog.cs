using Microsoft.Extensions.Logging;

namespace StreamClone.Shared;

/// <summary>Log events of Shared: ids 4000-4999, never reused.</summary>
internal static partial class SharedLog
{
    [LoggerMessage(4001, LogLevel.Debug, "Connection {Name} closed: {Reason}")]
    public static partial void ConnectionClosed(ILogger logger, string name, string reason);

    [LoggerMessage(4002, LogLevel.Warning, "Refused {Peer}: {Reason}")]
    public static partial void Refused(ILogger logger, string peer, string reason);

    [LoggerMessage(4003, LogLevel.Information, "Insecure: {Where} runs plain TCP without TLS; peers are not authenticated and traffic is not encrypted")]
    public static partial void Insecure(ILogger logger, string where);

    [LoggerMessage(4004, LogLevel.Debug, "TLS from {Peer}: {PeerName} ({Protocol}, {CipherSuite})")]
    public static partial void TlsEstablished(ILogger logger, string peer, string peerName, string protocol, string cipherSuite);

    [LoggerMessage(4005, LogLevel.Debug, "Connection from {Peer} dropped: {Reason}")]
    public static partial void ConnectionDropped(ILogger logger, string peer, string reason);
}
