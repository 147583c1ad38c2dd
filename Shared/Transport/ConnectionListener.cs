using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>
/// The server side of every role (a source now, a relay's downstream side next): accepts TCP connections,
/// runs the TLS handshake when the node has <see cref="TlsSettings"/> (within
/// <see cref="TransportOptions.HandshakeTimeout"/>), and hands each authenticated connection to the
/// caller's handler on its own task. A refused peer (no certificate, another CA, expired, no TLS at all) is
/// logged with its address and the validator's reason and dropped before any frame is read or sent; the
/// listener serves on.
/// </summary>
public sealed class ConnectionListener : IAsyncDisposable
{
    private readonly TransportOptions _options;
    private readonly TlsSettings? _tls;
    private readonly int _maxPending;
    private readonly ILogger _logger;
    // Connections accepted and not yet established (TLS or frame handshake under way), by accept order.
    private readonly ConcurrentDictionary<long, Pending> _pending = new();
    private long _accepted;
    private Socket? _socket;

    /// <summary>
    /// <paramref name="maxPending"/>: connections in their handshake at once; over that, the oldest is dropped (a real
    /// peer is through in milliseconds, so the old ones are the silent ones, and a flood evicts itself, not the peers
    /// behind it). <paramref name="tls"/> null = plain TCP (logged as insecure at <see cref="Listen"/>).
    /// </summary>
    public ConnectionListener(TransportOptions options, TlsSettings? tls, int maxPending, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPending, 1);
        _options = options;
        _tls = tls;
        _maxPending = maxPending;
        _logger = logger;
    }

    public bool IsSecure => _tls is not null;

    public IPEndPoint Listen(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(endPoint);
        socket.Listen(64);
        _socket = socket;
        var bound = (IPEndPoint)socket.LocalEndPoint!;
        if (_tls is null)
        {
            SharedLog.Insecure(_logger, bound.ToString());
        }
        return bound;
    }

    /// <summary>
    /// Accepts until <paramref name="ct"/> is cancelled, then waits for every handler to return. A handler
    /// owns its connection (disposes it) and calls <see cref="AcceptedConnection.Established"/> once the peer
    /// is past what may be left pending.
    /// </summary>
    public async Task RunAsync(Func<AcceptedConnection, CancellationToken, Task> handler, CancellationToken ct)
    {
        var socket = _socket ?? throw new InvalidOperationException("Call Listen first.");
        var connections = new List<Task>();
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var accepted = await socket.AcceptAsync(ct);
                connections.Add(Task.Run(() => HandleAsync(accepted, handler, ct), CancellationToken.None));
                connections.RemoveAll(t => t.IsCompleted);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        await Task.WhenAll(connections);
    }

    private async Task HandleAsync(Socket socket, Func<AcceptedConnection, CancellationToken, Task> handler, CancellationToken ct)
    {
        var peer = socket.RemoteEndPoint?.ToString() ?? "?";
        var ticket = Interlocked.Increment(ref _accepted);
        var pending = new Pending(peer, socket);
        _pending[ticket] = pending;
        try
        {
            SocketConnection.SetRecommendedServerOptions(socket);
            // Keepalive from the first byte: a peer that vanishes before its Hello is found too. The lane's own
            // options follow once its Hello names it.
            TransportSockets.Tune(socket, Lane.Demand, _options);
            EvictOldestPending();
            var transport = _tls is null ? new SocketTransport(socket, _options) : await AuthenticateAsync(socket, peer, _tls, ct);
            if (transport is null)
            {
                return;
            }
            await using var connection = new FrameConnection(transport, Lane.Bulk, _options, _logger);
            pending.Attach(connection);
            await handler(new AcceptedConnection(connection, () => _pending.TryRemove(ticket, out _)), ct);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The handler logs its own failures through the session failure policy; one bad peer never stops the listener.
            SharedLog.ConnectionDropped(_logger, peer, ex.Message);
        }
        finally
        {
            _pending.TryRemove(ticket, out _);
            if (pending.Connection is null)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>The TLS handshake of one accepted socket; null (logged, socket closed) when the peer is refused.</summary>
    private async Task<DuplexTransport?> AuthenticateAsync(Socket socket, string peer, TlsSettings tls, CancellationToken ct)
    {
        var wire = new CountingStream(new NetworkStream(socket, ownsSocket: false));
        var stream = new SslStream(wire, leaveInnerStreamOpen: false);
        var authentication = new TlsAuthentication(tls);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_options.HandshakeTimeout);
        // The first two bytes, peeked (left in the socket for TLS): what a refusal says when the peer does not
        // speak TLS at all, e.g. a node started with --insecure sending its Hello in clear text.
        var first = new byte[2];
        var peeked = 0;
        try
        {
            peeked = await socket.ReceiveAsync(first, SocketFlags.Peek, deadline.Token);
            await stream.AuthenticateAsServerAsync(authentication.ServerOptions(), deadline.Token);
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException or ObjectDisposedException
            || (ex is OperationCanceledException && !ct.IsCancellationRequested))
        {
            await stream.DisposeAsync();
            SharedLog.Refused(_logger, peer, TlsAuthentication.NotTls(first.AsSpan(0, peeked)) ?? authentication.Describe(ex));
            return null;
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
        var transport = new TlsTransport(socket, wire, stream, _options);
        SharedLog.TlsEstablished(_logger, peer, transport.RemoteCertificate is { } certificate ? tls.PeerValidator.PeerName(certificate) : "?", stream.SslProtocol.ToString(), stream.NegotiatedCipherSuite.ToString());
        return transport;
    }

    private void EvictOldestPending()
    {
        while (_pending.Count > _maxPending)
        {
            var oldest = _pending.Keys.DefaultIfEmpty(long.MaxValue).Min();
            if (_pending.TryRemove(oldest, out var victim))
            {
                var reason = CloseReason.Refused($"dropped: more than {_maxPending} connections in their handshake, and this one the oldest");
                SharedLog.Refused(_logger, victim.Peer, reason.Detail);
                victim.Evict(reason);
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket?.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>One accepted peer until it is established; eviction and the TLS handshake's end may race, hence the lock.</summary>
    private sealed class Pending(string peer, Socket socket)
    {
        private readonly Lock _lock = new();
        private CloseReason? _evicted;

        public string Peer { get; } = peer;

        public FrameConnection? Connection { get; private set; }

        public void Attach(FrameConnection connection)
        {
            lock (_lock)
            {
                Connection = connection;
                if (_evicted is { } evicted)
                {
                    connection.Abort(evicted);
                }
            }
        }

        public void Evict(CloseReason reason)
        {
            lock (_lock)
            {
                _evicted = reason;
                if (Connection is { } connection)
                {
                    connection.Abort(reason);
                    return;
                }
            }
            // Still in its TLS handshake: shutting the socket ends it (and Attach aborts the connection, should it win the race).
            try
            {
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
        }
    }
}

/// <summary>A connection the listener accepted (and authenticated): the handler's to serve and dispose.</summary>
public sealed class AcceptedConnection(FrameConnection connection, Action established)
{
    public FrameConnection Connection { get; } = connection;

    /// <summary>The peer is past its handshake (a session now, bounded by the session's own limits): no longer counted as pending.</summary>
    public void Established() => established();
}
