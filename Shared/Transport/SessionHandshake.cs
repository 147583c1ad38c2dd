using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>What a completed handshake established about the peer and the lane.</summary>
public sealed record HandshakeResult(string PeerRole, Lane Lane, string SessionId, PeerIdentity Peer);

/// <summary>
/// The one handshake of every role, run on a connection the transport already secured (TLS authenticated
/// both certificates before this) and before any data:
/// <code>
/// client → server   Hello { version, role, lane, session id, name }
/// server → client   Hello { version, role, same lane, same session id, name }   (or Error, then close)
/// </code>
/// A bulk lane opens a session under a fresh session id; the session's demand lane says the same id, which
/// is how the server pairs them (<see cref="LanePairing{TSession}"/>). Each side checks the other's protocol
/// version. The peer's identity is its certificate's name under TLS; without TLS only the Hello's
/// self-declared name, marked unverified. Every step runs within <see cref="TransportOptions.HandshakeTimeout"/>.
/// Failures throw (<see cref="ProtocolViolationException"/>, <see cref="TimeoutException"/>, …); the caller
/// closes through <see cref="SessionFailure"/>, which sends the Error frame and records the typed reason.
/// </summary>
public static class SessionHandshake
{
    /// <summary>The connecting side: says who it is and which lane/session this is, and checks the answer.</summary>
    public static async Task<HandshakeResult> ClientAsync(FrameConnection connection, string role, Lane lane, string sessionId, string name, TlsSettings? tls, CancellationToken ct)
    {
        using var deadline = Deadline(connection, ct);
        try
        {
            await connection.SendAsync(FrameType.Hello,
                new HelloMessage { Role = role, Lane = lane, SessionId = sessionId, PeerName = name },
                ReadOnlyMemory<byte>.Empty, deadline.Token);
            var hello = await connection.ReceiveOneAsync<HelloMessage>(FrameType.Hello, deadline.Token);
            CheckVersion(hello, role);
            if (hello.Lane != lane || hello.SessionId != sessionId)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.UnknownSession,
                    $"the peer answered for lane {hello.Lane} of session {Printable(hello.SessionId)}, not lane {lane} of session {sessionId}");
            }
            return Establish(connection, hello, tls);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            throw TimedOut(connection);
        }
    }

    /// <summary>
    /// The accepting side: reads the peer's Hello, checks it, asks <paramref name="admit"/> (a node limit such
    /// as a full source; null admits), sets the connection's lane and answers.
    /// </summary>
    public static async Task<HandshakeResult> ServerAsync(FrameConnection connection, string role, string name, TlsSettings? tls,
        Func<HandshakeResult, CloseReason?>? admit, CancellationToken ct)
    {
        using var deadline = Deadline(connection, ct);
        try
        {
            var hello = await connection.ReceiveOneAsync<HelloMessage>(FrameType.Hello, deadline.Token);
            CheckVersion(hello, role);
            if (!WireLimits.IsValidId(hello.SessionId, WireLimits.MaxSessionIdLength))
            {
                ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, "Hello without a valid session id");
            }
            if (hello.Lane is not (Lane.Bulk or Lane.Demand))
            {
                ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, $"Hello for unknown lane {(int)hello.Lane}");
            }
            var result = Establish(connection, hello, tls);
            if (admit?.Invoke(result) is { } refusal)
            {
                throw new HandshakeRefusedException(refusal);
            }
            connection.SetLane(hello.Lane);
            await connection.SendAsync(FrameType.Hello,
                new HelloMessage { Role = role, Lane = hello.Lane, SessionId = hello.SessionId, PeerName = name },
                ReadOnlyMemory<byte>.Empty, deadline.Token);
            return result;
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            throw TimedOut(connection);
        }
    }

    private static CancellationTokenSource Deadline(FrameConnection connection, CancellationToken ct)
    {
        var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(connection.Options.HandshakeTimeout);
        return deadline;
    }

    private static TimeoutException TimedOut(FrameConnection connection) =>
        new($"{connection.Name}: handshake did not complete within {connection.Options.HandshakeTimeout.TotalSeconds:0.#} s");

    private static void CheckVersion(HelloMessage hello, string role)
    {
        if (hello.ProtocolVersion != ProtocolVersions.Current)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.UnsupportedVersion,
                $"peer speaks protocol version {hello.ProtocolVersion}, this {role} speaks {ProtocolVersions.Current}");
        }
    }

    private static HandshakeResult Establish(FrameConnection connection, HelloMessage hello, TlsSettings? tls)
    {
        var address = connection.RemoteAddress;
        var peer = tls is not null && connection.Transport.RemoteCertificate is { } certificate
            ? new PeerIdentity(tls.PeerValidator.PeerName(certificate), Verified: true, address)
            : new PeerIdentity(Printable(hello.PeerName), Verified: false, address);
        connection.Peer = peer;
        connection.Metrics.SetPeer(peer.Name);
        return new HandshakeResult(Printable(hello.Role), hello.Lane, hello.SessionId, peer);
    }

    /// <summary>
    /// A peer's self-declared text as it may appear in a log: an id of at most <see cref="WireLimits.MaxSessionIdLength"/>
    /// id characters, else "?" (a hostile Hello must not write control characters or megabytes into our logs).
    /// </summary>
    private static string Printable(string text) => WireLimits.IsValidId(text, WireLimits.MaxSessionIdLength) ? text : "?";
}

/// <summary>The accepting side turned a well-formed Hello away (a node limit); carries the typed reason sent to the peer.</summary>
public sealed class HandshakeRefusedException(CloseReason reason) : Exception(reason.Detail)
{
    public CloseReason Reason { get; } = reason;
}
