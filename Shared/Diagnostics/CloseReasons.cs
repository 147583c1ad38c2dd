using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Diagnostics;

/// <summary>
/// The <c>reason</c> tag of <see cref="StreamCloneMetrics.ConnectionsClosed"/>: a close reason's kind
/// from a fixed set, never its text (which names addresses, sizes and ids): the <see cref="ProtocolError"/>
/// name when an Error frame went or came, otherwise the <see cref="CloseKind"/> below.
/// </summary>
public static class CloseReasons
{
    public const string Completed = "completed";
    public const string PeerClosed = "peer_closed";
    public const string Timeout = "timeout";
    public const string Refused = "refused";
    public const string Local = "local";
    public const string Other = "other";

    /// <summary>The tag value of <paramref name="reason"/>, one of a fixed set.</summary>
    public static string KindOf(CloseReason reason) => reason.Code != ProtocolError.None
        ? reason.Code.ToString()
        : reason.Kind switch
        {
            CloseKind.Completed => Completed,
            CloseKind.PeerClosed => PeerClosed,
            CloseKind.Timeout => Timeout,
            CloseKind.Refused => Refused,
            CloseKind.LocalShutdown => Local,
            _ => Other,
        };
}
