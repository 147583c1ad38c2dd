using System.Net;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source.Inputs;

namespace StreamClone.Source.Server;

/// <summary>
/// Serves one snapshot to any number of sinks (or relays). The listener accepts (and, with TLS, authenticates)
/// connections; each starts with the session handshake, which names its lane and session: a bulk lane starts
/// a session, a demand lane joins one. A bad peer costs only its own connection: the server and other
/// sessions keep running.
/// </summary>
public sealed class SourceServer : IAsyncDisposable
{
    private readonly ISnapshotInput _input;
    private readonly SourceOptions _options;
    private readonly ILogger _logger;
    private readonly LanePairing<SourceSession> _sessions = new();
    private readonly ConnectionListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private int _streaming;

    public SourceServer(ISnapshotInput input, SourceOptions options, TransportOptions transport, ILogger logger)
    {
        options.Validate();
        _input = input;
        _options = options;
        _logger = logger;
        // Pending = accepted and not yet streaming (TLS, Hello, then offer + inventory for a bulk lane).
        _listener = new ConnectionListener(transport, options.Tls, options.MaxPendingConnections, logger);
    }

    /// <summary>
    /// Raised when a session that took its sink's inventory and began streaming ends, successfully
    /// or not (see <see cref="SourceSessionStats.Completed"/>). Connections refused before that
    /// (a bad or silent handshake, too many sessions) are logged, not reported here.
    /// </summary>
    public event Action<SourceSessionStats>? SessionEnded;

    /// <summary>Sessions currently running (for progress displays).</summary>
    public IEnumerable<SourceSession> ActiveSessions => _sessions.Sessions;

    public IPEndPoint Listen(IPEndPoint endPoint)
    {
        var bound = _listener.Listen(endPoint);
        SourceLog.Listening(_logger, bound.ToString(), _input.Offer.SnapshotId, _input.Offer.Objects.Count, _input.Offer.Objects.Sum(o => o.Size));
        return bound;
    }

    public async Task RunAsync(CancellationToken ct)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        // Sessions are linked to this token too; stopping them here gives their lanes the reason.
        using var shutdown = linked.Token.Register(() =>
        {
            foreach (var session in _sessions.Sessions)
            {
                session.Stop(CloseReason.LocalShutdown("source shutting down"));
            }
        });
        await _listener.RunAsync(ServeAsync, linked.Token);
    }

    /// <summary>
    /// Serves one connection that did not come through the listener (an in-memory pipe in session tests):
    /// the same handshake, pairing and sessions. The caller owns (disposes) it.
    /// </summary>
    public Task ServeAsync(FrameConnection connection, CancellationToken ct) => ServeAsync(new AcceptedConnection(connection, () => { }), ct);

    private async Task ServeAsync(AcceptedConnection accepted, CancellationToken ct)
    {
        var connection = accepted.Connection;
        HandshakeResult hello;
        try
        {
            hello = await SessionHandshake.ServerAsync(connection, NodeRoles.Source, Environment.MachineName, _options.Tls, Admit, ct);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            await SessionFailure.CloseAsync(connection, ex,
                decided: reason => SourceLog.ConnectionRefused(_logger, connection.RemoteAddress, reason.ToString()));
            return;
        }

        if (hello.Lane == Lane.Bulk)
        {
            await ServeBulkAsync(accepted, hello, ct);
            return;
        }
        if (_sessions.TryJoin(hello.SessionId, hello.Peer, out var refusal) is not { } session)
        {
            SourceLog.ConnectionRefused(_logger, hello.Peer.ToString(), refusal!.ToString());
            await connection.FailAsync(refusal);
            return;
        }
        // Bounded by its session from here on: one demand lane per session, closed when the session ends.
        accepted.Established();
        SourceLog.DemandLaneAttached(_logger, hello.SessionId, hello.Peer.ToString());
        await session.RunDemandAsync(connection);
    }

    /// <summary>A bulk lane beyond <see cref="SourceOptions.MaxSessions"/> is refused in the handshake already (checked again once it would stream).</summary>
    private CloseReason? Admit(HandshakeResult hello) =>
        hello.Lane == Lane.Bulk && Volatile.Read(ref _streaming) >= _options.MaxSessions ? TooManySessions() : null;

    private CloseReason TooManySessions() => CloseReason.Refused(
        $"this source already streams to {_options.MaxSessions} sinks, its maximum; try again later", ProtocolError.TooManySessions);

    private async Task ServeBulkAsync(AcceptedConnection accepted, HandshakeResult hello, CancellationToken ct)
    {
        var connection = accepted.Connection;
        var sessionId = hello.SessionId;
        var session = new SourceSession(sessionId, hello.Peer, _input, _options, _logger, ct);
        if (!_sessions.TryOpen(sessionId, hello.Peer, session))
        {
            session.Close(CloseReason.Refused("duplicate session id"));
            await connection.FailAsync(CloseReason.Refused($"session {sessionId} is already running", ProtocolError.UnknownSession));
            return;
        }
        var streaming = false;
        try
        {
            try
            {
                await session.OpenAsync(connection);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                await SessionFailure.CloseAsync(connection, ex,
                    decided: reason => SourceLog.ConnectionRefused(_logger, hello.Peer.ToString(), $"session {sessionId} did not complete its inventory: {reason}"));
                return;
            }

            // The inventory is in: this is a session now, no longer a pending connection.
            accepted.Established();
            if (Interlocked.Increment(ref _streaming) > _options.MaxSessions)
            {
                Interlocked.Decrement(ref _streaming);
                var refusal = TooManySessions();
                SourceLog.ConnectionRefused(_logger, hello.Peer.ToString(), $"session {sessionId}: {refusal}");
                await connection.FailAsync(refusal);
                return;
            }
            streaming = true;
            await session.RunBulkAsync(connection);
        }
        finally
        {
            // A demand lane that attached to a session which never streamed is closed with it.
            _sessions.Close(sessionId);
            session.Close(CloseReason.LocalShutdown("session ended"));
            if (streaming)
            {
                Interlocked.Decrement(ref _streaming);
                SessionEnded?.Invoke(session.Stats);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _listener.DisposeAsync();
        _stop.Dispose();
    }
}
