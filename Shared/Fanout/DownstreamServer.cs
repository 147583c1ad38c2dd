using System.Net;
using Microsoft.Extensions.Logging;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// Serves one snapshot's <see cref="EncodedStream"/> to any number of children (sinks or relays), whatever this
/// node is (a source, a relay). The listener accepts (and, with TLS, authenticates) connections; each starts with
/// the session handshake, which names its lane and session: a bulk lane starts a session, a demand lane joins
/// one. Every session reads the stream at its own pace: the snapshot is encoded once, a slow child only slows
/// itself (its write-stall timeout drops it), and a late one reads the stream from its start. A bad peer costs
/// only its own connection: the server and other sessions keep running.
/// </summary>
public sealed class DownstreamServer : IAsyncDisposable
{
    private readonly ILogger _logger;
    private readonly LanePairing<DownstreamSession> _sessions = new();
    private readonly ConnectionListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource<EncodedStream> _stream = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _streaming;

    /// <param name="options">Bounds and tuning (a role's options derive from these).</param>
    /// <param name="transport">Timeouts and buffers of every connection.</param>
    /// <param name="role">This node's role in the handshake (<see cref="NodeRoles"/>).</param>
    /// <param name="metricRole">The role metrics are recorded under.</param>
    /// <param name="demandReader">Where demand requests are read.</param>
    /// <param name="logger">Sessions' and refusals' log lines.</param>
    /// <param name="stream">The stream served; null when it comes later (<see cref="SetStream"/>): sessions wait for it.</param>
    public DownstreamServer(DownstreamOptions options, TransportOptions transport, string role, MetricRole metricRole,
        IDemandReader demandReader, ILogger logger, EncodedStream? stream = null)
    {
        options.Validate();
        Options = options;
        Role = role;
        MetricRole = metricRole;
        DemandReader = demandReader;
        _logger = logger;
        if (stream is not null)
        {
            _stream.SetResult(stream);
        }
        // Pending = accepted and not yet streaming (TLS, Hello, then offer + inventory for a bulk lane).
        _listener = new ConnectionListener(transport, options.Tls, options.MaxPendingConnections, logger);
    }

    public DownstreamOptions Options { get; }

    /// <summary>This node's role (<see cref="NodeRoles"/>), as told in the handshake and in failure messages.</summary>
    public string Role { get; }

    public MetricRole MetricRole { get; }

    public IDemandReader DemandReader { get; }

    /// <summary>The stream served, once there is one.</summary>
    public EncodedStream? Stream => _stream.Task.IsCompletedSuccessfully ? _stream.Task.Result : null;

    /// <summary>
    /// Frames a child sends on its bulk lane while it is streamed to (multicast receivers report there). Null:
    /// any such frame is a protocol error (UnexpectedFrame). Set before <see cref="RunAsync"/>.
    /// </summary>
    public ControlFrameHandler? ControlFrames { get; set; }

    /// <summary>
    /// Multicast admission (MulticastFanout): called before a session's first batch when its child asked for
    /// multicast; returns the join to send (its first sequence is where the TCP lane stops), or null to stay on TCP.
    /// </summary>
    public Func<DownstreamSession, MulticastJoinMessage?>? MulticastJoiner { get; set; }

    /// <summary>
    /// Raised when a session that took its child's inventory and began streaming ends, successfully
    /// or not (see <see cref="DownstreamSessionStats.Completed"/>). Connections refused before that
    /// (a bad or silent handshake, too many sessions) are logged, not reported here.
    /// </summary>
    public event Action<DownstreamSessionStats>? SessionEnded;

    /// <summary>Sessions currently running (for progress displays).</summary>
    public IEnumerable<DownstreamSession> ActiveSessions => _sessions.Sessions;

    /// <summary>Gives the server its stream (once: a relay's, when its upstream offered); sessions waiting for it go on.</summary>
    public void SetStream(EncodedStream stream)
    {
        if (!_stream.TrySetResult(stream))
        {
            throw new InvalidOperationException("this server already serves a stream");
        }
    }

    internal Task<EncodedStream> WaitForStreamAsync(CancellationToken ct) => _stream.Task.WaitAsync(ct);

    public IPEndPoint Listen(IPEndPoint endPoint) => _listener.Listen(endPoint);

    public async Task RunAsync(CancellationToken ct)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        // Sessions are linked to this token too; stopping them here gives their lanes the reason.
        using var shutdown = linked.Token.Register(() =>
        {
            foreach (var session in _sessions.Sessions)
            {
                session.Stop(CloseReason.LocalShutdown($"{Role} shutting down"));
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
            hello = await SessionHandshake.ServerAsync(connection, Role, Environment.MachineName, Options.Tls, Admit, ct);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            await SessionFailure.CloseAsync(connection, ex,
                decided: reason => FanoutLog.ConnectionRefused(_logger, connection.RemoteAddress, reason.ToString()));
            return;
        }

        if (hello.Lane == Lane.Bulk)
        {
            await ServeBulkAsync(accepted, hello, ct);
            return;
        }
        if (_sessions.TryJoin(hello.SessionId, hello.Peer, out var refusal) is not { } session)
        {
            FanoutLog.ConnectionRefused(_logger, hello.Peer.ToString(), refusal!.ToString());
            await connection.FailAsync(refusal);
            return;
        }
        // Bounded by its session from here on: one demand lane per session, closed when the session ends.
        accepted.Established();
        FanoutLog.DemandLaneAttached(_logger, hello.SessionId, hello.Peer.ToString());
        await session.RunDemandAsync(connection);
    }

    /// <summary>A bulk lane beyond <see cref="DownstreamOptions.MaxSessions"/> is refused in the handshake already (checked again once it would stream).</summary>
    private CloseReason? Admit(HandshakeResult hello) =>
        hello.Lane == Lane.Bulk && Volatile.Read(ref _streaming) >= Options.MaxSessions ? TooManySessions() : null;

    private CloseReason TooManySessions() => CloseReason.Refused(
        $"this {Role} already streams to {Options.MaxSessions} sinks, its maximum; try again later", ProtocolError.TooManySessions);

    private async Task ServeBulkAsync(AcceptedConnection accepted, HandshakeResult hello, CancellationToken ct)
    {
        var connection = accepted.Connection;
        var sessionId = hello.SessionId;
        var session = new DownstreamSession(sessionId, hello.Peer, this, _logger, ct);
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
                    decided: reason => FanoutLog.ConnectionRefused(_logger, hello.Peer.ToString(), $"session {sessionId} did not complete its inventory: {reason}"));
                return;
            }

            // The inventory is in: this is a session now, no longer a pending connection.
            accepted.Established();
            if (Interlocked.Increment(ref _streaming) > Options.MaxSessions)
            {
                Interlocked.Decrement(ref _streaming);
                var refusal = TooManySessions();
                FanoutLog.ConnectionRefused(_logger, hello.Peer.ToString(), $"session {sessionId}: {refusal}");
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
