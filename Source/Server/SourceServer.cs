using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source.Inputs;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Source.Server;

/// <summary>
/// Serves one snapshot to any number of sinks (or relays). Each connection starts with a Hello that
/// names its lane and session; a bulk lane starts a session, a demand lane joins one. A bad peer
/// costs only its own connection: the server and other sessions keep running.
/// </summary>
public sealed class SourceServer : IAsyncDisposable
{
    private readonly ISnapshotInput _input;
    private readonly SourceOptions _options;
    private readonly TransportOptions _transport;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, SourceSession> _sessions = new();
    private readonly CancellationTokenSource _stop = new();
    // Connections not yet past their handshake (Hello, then offer + inventory for a bulk lane), by accept order.
    private readonly ConcurrentDictionary<long, FrameConnection> _pending = new();
    private long _accepted;
    private int _streaming;
    private Socket? _listener;

    public SourceServer(ISnapshotInput input, SourceOptions options, TransportOptions transport, ILogger logger)
    {
        options.Validate();
        _input = input;
        _options = options;
        _transport = transport;
        _logger = logger;
    }

    /// <summary>
    /// Raised when a session that took its sink's inventory and began streaming ends, successfully
    /// or not (see <see cref="SourceSessionStats.Completed"/>). Connections refused before that
    /// (a bad or silent handshake, too many sessions) are logged, not reported here.
    /// </summary>
    public event Action<SourceSessionStats>? SessionEnded;

    /// <summary>Sessions currently running (for progress displays).</summary>
    public IEnumerable<SourceSession> ActiveSessions => _sessions.Values;

    public IPEndPoint Listen(IPEndPoint endPoint)
    {
        var listener = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Bind(endPoint);
        listener.Listen(64);
        _listener = listener;
        var bound = (IPEndPoint)listener.LocalEndPoint!;
        SourceLog.Listening(_logger, bound.ToString(), _input.Offer.SnapshotId, _input.Offer.Objects.Count, _input.Offer.Objects.Sum(o => o.Size));
        return bound;
    }

    public async Task RunAsync(CancellationToken ct)
    {
        var listener = _listener ?? throw new InvalidOperationException("Call Listen first.");
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        var connections = new List<Task>();
        try
        {
            while (!linked.IsCancellationRequested)
            {
                var socket = await listener.AcceptAsync(linked.Token);
                connections.Add(Task.Run(() => HandleConnectionAsync(socket, linked.Token), CancellationToken.None));
                connections.RemoveAll(t => t.IsCompleted);
            }
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
        }
        foreach (var session in _sessions.Values)
        {
            session.Stop("source shutting down");
        }
        await Task.WhenAll(connections);
    }

    private async Task HandleConnectionAsync(Socket socket, CancellationToken ct)
    {
        var peer = socket.RemoteEndPoint?.ToString() ?? "?";
        await using var connection = FrameConnection.Accept(socket, _transport, _logger);
        var ticket = Interlocked.Increment(ref _accepted);
        _pending[ticket] = connection;
        try
        {
            EvictOldestPending();
            await ServeAsync(connection, peer, ticket, ct);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Already logged by the session with its close reason; one bad peer never stops the server.
            connection.Abort(ex.Message);
        }
        finally
        {
            _pending.TryRemove(ticket, out _);
        }
    }

    /// <summary>
    /// Keeps at most <see cref="SourceOptions.MaxPendingConnections"/> connections in their
    /// handshake by dropping the oldest: a real sink is through its handshake in milliseconds, so
    /// the connections that are old here are the ones that stay silent.
    /// </summary>
    private void EvictOldestPending()
    {
        while (_pending.Count > _options.MaxPendingConnections)
        {
            var oldest = _pending.Keys.DefaultIfEmpty(long.MaxValue).Min();
            if (_pending.TryRemove(oldest, out var victim))
            {
                var reason = $"dropped: more than {_options.MaxPendingConnections} connections in their handshake, and this one the oldest";
                SourceLog.ConnectionRefused(_logger, victim.RemoteEndPoint?.ToString() ?? "?", reason);
                victim.Abort(reason);
            }
        }
    }

    private async Task ServeAsync(FrameConnection connection, string peer, long ticket, CancellationToken ct)
    {
        HelloMessage hello;
        try
        {
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(ct);
            handshake.CancelAfter(_transport.HandshakeTimeout);
            hello = await connection.ReceiveOneAsync<HelloMessage>(FrameType.Hello, handshake.Token);
            if (hello.ProtocolVersion != ProtocolVersions.Current)
            {
                throw new ProtocolViolationException(ProtocolError.UnsupportedVersion,
                    $"peer speaks protocol version {hello.ProtocolVersion}, this source speaks {ProtocolVersions.Current}");
            }
            if (!WireLimits.IsValidId(hello.SessionId, WireLimits.MaxSessionIdLength))
            {
                throw new ProtocolViolationException(ProtocolError.MalformedHeader, "Hello without a valid session id");
            }
            if (hello.Lane == Lane.Bulk && Volatile.Read(ref _streaming) >= _options.MaxSessions)
            {
                throw new ProtocolViolationException(ProtocolError.TooManySessions,
                    $"this source already streams to {_options.MaxSessions} sinks, its maximum; try again later");
            }
            connection.SetLane(hello.Lane);
            connection.Metrics.SetPeer(hello.PeerName);
            await connection.SendAsync(FrameType.Hello,
                new HelloMessage { Role = "source", Lane = hello.Lane, SessionId = hello.SessionId, PeerName = Environment.MachineName },
                ReadOnlyMemory<byte>.Empty, ct);
        }
        catch (ProtocolViolationException ex)
        {
            SourceLog.ConnectionRefused(_logger, peer, ex.Message);
            await connection.FailAsync(ex.Code, ex.Message);
            return;
        }
        catch (Exception ex) when (ex is OperationCanceledException or EndOfStreamException or IOException or SocketException or TimeoutException)
        {
            SourceLog.ConnectionRefused(_logger, peer, $"handshake did not complete: {ex.Message}");
            return;
        }

        if (hello.Lane == Lane.Bulk)
        {
            await ServeBulkAsync(connection, hello.SessionId, peer, ticket, ct);
        }
        else if (_sessions.TryGetValue(hello.SessionId, out var session) && session.TryClaimDemandLane())
        {
            // Bounded by its session from here on: one demand lane per session, closed when the session ends.
            _pending.TryRemove(ticket, out _);
            SourceLog.DemandLaneAttached(_logger, hello.SessionId, peer);
            await session.RunDemandAsync(connection);
        }
        else
        {
            var reason = session is null ? $"no bulk session {hello.SessionId} on this source" : $"session {hello.SessionId} has its demand lane already";
            SourceLog.ConnectionRefused(_logger, peer, reason);
            await connection.FailAsync(ProtocolError.UnknownSession, reason);
        }
    }

    private async Task ServeBulkAsync(FrameConnection connection, string sessionId, string peer, long ticket, CancellationToken ct)
    {
        var session = new SourceSession(sessionId, _input, _options, _logger, ct);
        if (!_sessions.TryAdd(sessionId, session))
        {
            await connection.FailAsync(ProtocolError.UnknownSession, $"session {sessionId} is already running");
            return;
        }
        var streaming = false;
        try
        {
            try
            {
                await session.OpenAsync(connection);
            }
            catch (ProtocolViolationException ex)
            {
                SourceLog.ConnectionRefused(_logger, peer, $"session {sessionId}: {ex.Message}");
                if (ex.Code != ProtocolError.PeerError)
                {
                    await connection.FailAsync(ex.Code, ex.Message);
                }
                return;
            }
            catch (Exception ex) when (ex is OperationCanceledException or EndOfStreamException or IOException or SocketException or TimeoutException)
            {
                SourceLog.ConnectionRefused(_logger, peer, $"session {sessionId} did not send its inventory: {ex.Message}");
                return;
            }

            // The inventory is in: this is a session now, no longer a pending connection.
            _pending.TryRemove(ticket, out _);
            if (Interlocked.Increment(ref _streaming) > _options.MaxSessions)
            {
                Interlocked.Decrement(ref _streaming);
                var reason = $"this source already streams to {_options.MaxSessions} sinks, its maximum; try again later";
                SourceLog.ConnectionRefused(_logger, peer, $"session {sessionId}: {reason}");
                await connection.FailAsync(ProtocolError.TooManySessions, reason);
                return;
            }
            streaming = true;
            await session.RunBulkAsync(connection);
        }
        finally
        {
            // A demand lane that attached to a session which never streamed is closed with it.
            _sessions.TryRemove(sessionId, out _);
            session.Close("session ended");
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
        _listener?.Dispose();
        _stop.Dispose();
    }
}
