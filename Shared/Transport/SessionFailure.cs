using System.Net.Sockets;
using System.Security.Authentication;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>
/// The one failure policy of every session and lane (source, sink, relay; bulk and demand; handshake or
/// stream): an exception becomes one typed <see cref="CloseReason"/>; when the peer can still hear it and the
/// reason is ours to explain (a protocol violation, a refusal, a local fault), it goes to the peer in an
/// Error frame; then the connection closes. The caller logs the returned reason once.
/// <list type="bullet">
/// <item>the connection saw the end itself (peer closed, reset, idle or write-stall timeout, the peer's own
/// Error frame, a local stop): that reason stands, nothing is sent;</item>
/// <item><see cref="ProtocolViolationException"/> → Protocol + Error frame with its code;</item>
/// <item><see cref="HandshakeRefusedException"/> → its Refused reason + Error frame;</item>
/// <item><see cref="AuthenticationException"/> → Refused (TLS said no: no frame may pass);</item>
/// <item><see cref="TimeoutException"/> → Timeout; <see cref="OperationCanceledException"/> → the session's stop
/// reason, else LocalShutdown (nothing sent: the peer is silent, or we are leaving);</item>
/// <item>anything else (the snapshot cannot be read, the store cannot write) → the role's fault reason + Error frame.</item>
/// </list>
/// </summary>
public static class SessionFailure
{
    /// <summary>
    /// Classifies <paramref name="caught"/>, tells the peer on <paramref name="connection"/> when the policy says so,
    /// closes, and returns the reason recorded (first cause wins). <paramref name="fault"/> is the role's reason for a
    /// failure of its own (the source: IncompleteSnapshot "cannot deliver …"); <paramref name="stopped"/> why the
    /// session was stopped, if it was: a cancellation is that, not a cause of its own.
    /// </summary>
    /// <remarks>
    /// <paramref name="decided"/> (the caller's log line) runs once the reason is known and before the peer
    /// is told: a peer, or a test, that has read the Error frame can rely on the line being written.
    /// </remarks>
    public static async Task<CloseReason> CloseAsync(FrameConnection connection, Exception caught, Func<Exception, CloseReason>? fault = null,
        CloseReason? stopped = null, Action<CloseReason>? decided = null)
    {
        if (connection.CloseReason is { } seen)
        {
            decided?.Invoke(seen);
            return seen;
        }
        var reason = Classify(caught, fault, stopped);
        decided?.Invoke(reason);
        await connection.FailAsync(reason);
        return connection.CloseReason ?? reason;
    }

    /// <summary>The typed reason for an exception (its first cause), without touching any connection.</summary>
    public static CloseReason Classify(Exception caught, Func<Exception, CloseReason>? fault = null, CloseReason? stopped = null)
    {
        var ex = FailureReport.FirstCause(caught);
        return ex switch
        {
            HandshakeRefusedException refused => refused.Reason,
            ProtocolViolationException { Code: ProtocolError.PeerError } => CloseReason.PeerError(ProtocolError.PeerError, ex.Message),
            ProtocolViolationException pv => CloseReason.Protocol(pv.Code, pv.Message),
            AuthenticationException => CloseReason.Refused(ex.Message),
            TimeoutException => CloseReason.Timeout(ex.Message),
            OperationCanceledException => stopped ?? CloseReason.LocalShutdown(ex.Message),
            EndOfStreamException or SocketException => CloseReason.PeerClosed(ex.Message),
            _ => fault?.Invoke(ex) ?? CloseReason.Fault(ProtocolError.None, ex.Message),
        };
    }
}
