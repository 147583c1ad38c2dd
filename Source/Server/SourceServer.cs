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
    private Socket? _listener;

    public SourceServer(ISnapshotInput input, SourceOptions options, TransportOptions transport, ILogger logger)
    {
        options.Validate();
        _input = input;
        _options = options;
        _transport = transport;
        _logger = logger;
    }

    /// <summary>Raised when a session ends, successfully or not (see <see cref="SourceSessionStats.Completed"/>).</summary>
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
            connection.SetLane(hello.Lane);
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
        catch (Exception ex) when (ex is OperationCanceledException or EndOfStreamException or IOException or SocketException)
        {
            SourceLog.ConnectionRefused(_logger, peer, $"handshake did not complete: {ex.Message}");
            return;
        }

        try
        {
            if (hello.Lane == Lane.Bulk)
            {
                var session = new SourceSession(hello.SessionId, _input, _options, _logger, ct);
                if (!_sessions.TryAdd(hello.SessionId, session))
                {
                    await connection.FailAsync(ProtocolError.UnknownSession, $"session {hello.SessionId} is already running");
                    return;
                }
                try
                {
                    await session.RunBulkAsync(connection);
                }
                finally
                {
                    _sessions.TryRemove(hello.SessionId, out _);
                    SessionEnded?.Invoke(session.Stats);
                }
            }
            else if (_sessions.TryGetValue(hello.SessionId, out var session))
            {
                SourceLog.DemandLaneAttached(_logger, hello.SessionId, peer);
                await session.RunDemandAsync(connection);
            }
            else
            {
                SourceLog.ConnectionRefused(_logger, peer, $"demand lane for unknown session {hello.SessionId}");
                await connection.FailAsync(ProtocolError.UnknownSession, $"no bulk session {hello.SessionId} on this source");
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Already logged by the session with its close reason; one bad peer never stops the server.
            connection.Abort(ex.Message);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener?.Dispose();
        _stop.Dispose();
    }
}
