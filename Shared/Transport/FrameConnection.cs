using System.Net;
using Microsoft.Extensions.Logging;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>
/// One connection speaking StreamClone frames over a <see cref="DuplexTransport"/> (TCP, TLS, or memory).
/// The transport moves bytes; this type owns the frame reader/writer on top of its pipes, the single
/// close reason, and nothing else. The receive side is <see cref="ReceiveAsync(Func{Frame, ValueTask{bool}}, CancellationToken)"/> (one consumer),
/// the send side <see cref="SendAsync{T}"/> (any number of producers, serialised by a lock).
/// Connections come from <see cref="Connector"/> (client), <see cref="ConnectionListener"/> (server)
/// or <see cref="CreateInMemoryPair"/> (tests).
/// </summary>
public sealed partial class FrameConnection : IAsyncDisposable
{
    private readonly DuplexTransport _connection;
    private readonly ILogger _logger;
    private CloseReason? _closeReason;

    public FrameConnection(DuplexTransport transport, Lane lane, TransportOptions options, ILogger logger)
    {
        _connection = transport;
        Options = options;
        _logger = logger;
        _frameReader = new FrameReader(options);
        Lane = lane;
        Name = NameOf(lane, transport);
        ReceiveIdleTimeout = IdleTimeoutOf(lane, options);
    }

    /// <summary>Two connected ends in memory (session tests): the client's lane is known, the server learns it from the Hello.</summary>
    public static (FrameConnection Client, FrameConnection Server) CreateInMemoryPair(Lane lane, TransportOptions options, ILogger logger)
    {
        var (client, server) = InMemoryTransport.CreatePair(options);
        return (new FrameConnection(client, lane, options, logger), new FrameConnection(server, Lane.Bulk, options, logger));
    }

    /// <summary>
    /// How long <see cref="ReceiveAsync(Func{Frame, ValueTask{bool}}, CancellationToken)"/> waits for the next byte before it fails with a
    /// <see cref="TimeoutException"/>: <see cref="TransportOptions.IdleTimeout"/> on the bulk lane,
    /// infinite on the demand lane, which is idle whenever no reader misses a chunk.
    /// </summary>
    public TimeSpan ReceiveIdleTimeout { get; private set; }

    public TransportOptions Options { get; }

    public Lane Lane { get; private set; }

    /// <summary>For logs: lane and peer, e.g. "bulk 127.0.0.1:40312".</summary>
    public string Name { get; private set; }

    /// <summary>Who the peer is, once <see cref="SessionHandshake"/> ran (from its certificate under TLS).</summary>
    public PeerIdentity? Peer { get; internal set; }

    public EndPoint? RemoteEndPoint => _connection.RemoteEndPoint;

    /// <summary>The peer's address for logs ("127.0.0.1:40312", or "memory:…").</summary>
    public string RemoteAddress => _connection.RemoteAddress;

    /// <summary>The transport underneath (its certificate, its counters).</summary>
    public DuplexTransport Transport => _connection;

    public long BytesSent => _connection.BytesSent;

    public long BytesReceived => _connection.BytesReceived;

    /// <summary>Why the connection closed, first cause wins (set once).</summary>
    public CloseReason? CloseReason => Volatile.Read(ref _closeReason);

    private static string NameOf(Lane lane, DuplexTransport transport) => $"{lane.ToString().ToLowerInvariant()} {transport.RemoteAddress}";

    private static TimeSpan IdleTimeoutOf(Lane lane, TransportOptions options) =>
        lane == Lane.Bulk ? options.IdleTimeout : Timeout.InfiniteTimeSpan;

    /// <summary>Called once the peer's Hello says which lane this is (server side): name, idle timeout and socket options follow it.</summary>
    public void SetLane(Lane lane)
    {
        Lane = lane;
        Name = NameOf(lane, _connection);
        ReceiveIdleTimeout = IdleTimeoutOf(lane, Options);
        Metrics.SetLane(lane);
        _connection.Tune(lane, Options);
    }

    /// <summary>Records the first close reason and stops both transport loops. Never throws.</summary>
    public void Abort(CloseReason reason)
    {
        if (Record(reason))
        {
            _connection.Shutdown();
        }
    }

    /// <summary>Records <paramref name="reason"/> if it is the first (logged and counted once); false when another came first.</summary>
    private bool Record(CloseReason reason)
    {
        if (Interlocked.CompareExchange(ref _closeReason, reason, null) is not null)
        {
            return false;
        }
        SharedLog.ConnectionClosed(_logger, Name, reason.ToString());
        StreamCloneMetrics.RecordConnectionClosed(reason);
        return true;
    }

    /// <summary>
    /// Best effort: tell the peer why (an Error frame with the reason's code and detail) before closing;
    /// the peer may be gone already. A reason that <see cref="CloseReason.TellsPeer"/> not just closes.
    /// </summary>
    public async Task FailAsync(CloseReason reason)
    {
        // Our reason is recorded before the peer hears it: a peer that hangs up the moment it reads the Error
        // frame must not get its "peer closed" (or another lane's reaction to it) recorded first.
        if (!Record(reason))
        {
            _connection.Shutdown();
            return;
        }
        if (reason.TellsPeer)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await SendAsync(FrameType.Error, new ErrorMessage { Code = reason.Code, Message = reason.Detail }, ReadOnlyMemory<byte>.Empty, cts.Token);
                await DrainAsync(TimeSpan.FromSeconds(1));
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The peer may have gone; the close reason recorded above is what matters.
            }
        }
        _connection.Shutdown();
    }

    public async ValueTask DisposeAsync()
    {
        // A send returns once its frame is in the pipe, not on the wire, and Abort drops what the pipe still holds. A
        // connection closed normally after its last frame (a sink's SnapshotStored, then dispose) lets that frame reach the
        // socket first, bounded: without this the source saw "peer closed after frame #2" instead of the acknowledgement
        // (EncodeOnceTests' late joiner, 1 run in ~12). A connection that already failed or was aborted is cut at once.
        if (CloseReason is null || CloseReason.Kind == CloseKind.Completed)
        {
            await DrainAsync(GracefulDrainTimeout);
        }
        Abort(CloseReason.LocalShutdown("closed locally"));
        await _sendLock.WaitAsync();
        try
        {
            await _connection.DisposeAsync();
        }
        finally
        {
            _sendLock.Release();
        }
        _sendLock.Dispose();
    }
}
