using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>How a connection or session ended, as a value: logs, summaries and tests read the kind, people the text.</summary>
public enum CloseKind
{
    /// <summary>The exchange ran to its end (the snapshot was stored and acknowledged).</summary>
    Completed = 1,
    /// <summary>The peer closed or reset the connection, or it broke under us (no frame can reach it any more).</summary>
    PeerClosed = 2,
    /// <summary>The peer broke the protocol (we sent it an Error frame with <see cref="CloseReason.Code"/>).</summary>
    Protocol = 3,
    /// <summary>The peer sent us an Error frame (its code is <see cref="CloseReason.Code"/>).</summary>
    PeerError = 4,
    /// <summary>The peer stayed silent, or stopped reading, for longer than a TransportOptions timeout.</summary>
    Timeout = 5,
    /// <summary>Turned away before any session: TLS refused its certificate, it spoke no TLS, or a node limit was reached.</summary>
    Refused = 6,
    /// <summary>We stopped: Ctrl+C, the server shutting down, the session ending on its other lane.</summary>
    LocalShutdown = 7,
    /// <summary>Our own side failed (a snapshot that cannot be read, a store that cannot write): the peer is told why.</summary>
    Fault = 8,
}

/// <summary>
/// One connection's (or session's) reason for closing; the first one recorded wins. <see cref="Code"/> is
/// what went (or came) in the Error frame, <see cref="ProtocolError.None"/> when no frame was exchanged.
/// </summary>
public sealed record CloseReason(CloseKind Kind, string Detail, ProtocolError Code = ProtocolError.None)
{
    public static CloseReason Completed(string detail) => new(CloseKind.Completed, detail);

    public static CloseReason PeerClosed(string detail) => new(CloseKind.PeerClosed, detail);

    public static CloseReason Protocol(ProtocolError code, string detail) => new(CloseKind.Protocol, detail, code);

    public static CloseReason PeerError(ProtocolError code, string detail) => new(CloseKind.PeerError, detail, code);

    public static CloseReason Timeout(string detail) => new(CloseKind.Timeout, detail);

    public static CloseReason Refused(string detail, ProtocolError code = ProtocolError.None) => new(CloseKind.Refused, detail, code);

    public static CloseReason LocalShutdown(string detail) => new(CloseKind.LocalShutdown, detail);

    public static CloseReason Fault(ProtocolError code, string detail) => new(CloseKind.Fault, detail, code);

    /// <summary>True when this reason goes to the peer in an Error frame before the connection closes.</summary>
    public bool TellsPeer => Code != ProtocolError.None && Kind is CloseKind.Protocol or CloseKind.Refused or CloseKind.Fault;

    /// <summary>"timeout: bulk 127.0.0.1:40312: no bytes from the peer for 60 s" — the kind, then what happened.</summary>
    public override string ToString() => $"{KindText}: {Detail}";

    private string KindText => Kind switch
    {
        CloseKind.Completed => "completed",
        CloseKind.PeerClosed => "peer closed",
        CloseKind.Protocol => "protocol error",
        CloseKind.PeerError => "peer error",
        CloseKind.Timeout => "timeout",
        CloseKind.Refused => "refused",
        CloseKind.LocalShutdown => "stopped",
        CloseKind.Fault => "local fault",
        _ => Kind.ToString(),
    };
}
