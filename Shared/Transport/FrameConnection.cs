using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>
/// One TCP connection speaking StreamClone frames. P.S.U. runs the two socket ↔ pipe loops
/// (Kestrel's shape); this type owns the frame reader/writer on top of the pipes, the single
/// close reason, and nothing else. The receive side is <see cref="ReceiveAsync"/> (one consumer),
/// the send side <see cref="SendAsync{T}"/> (any number of producers, serialised by a lock).
/// </summary>
public sealed partial class FrameConnection : IAsyncDisposable
{
    private readonly SocketConnection _connection;
    private readonly ILogger _logger;
    private int _closed;

    private FrameConnection(SocketConnection connection, TransportOptions options, string name, ILogger logger)
    {
        _connection = connection;
        Options = options;
        Name = name;
        _logger = logger;
        _frameReader = new FrameReader(options);
    }

    /// <summary>
    /// How long <see cref="ReceiveAsync"/> waits for the next byte before it fails with a
    /// <see cref="TimeoutException"/>: <see cref="TransportOptions.IdleTimeout"/> on the bulk lane,
    /// infinite on the demand lane, which is idle whenever no reader misses a chunk.
    /// </summary>
    public TimeSpan ReceiveIdleTimeout { get; private set; }

    public TransportOptions Options { get; }

    /// <summary>For logs: lane and peer, e.g. "bulk 127.0.0.1:40312".</summary>
    public string Name { get; private set; }

    public EndPoint? RemoteEndPoint => _connection.Socket.RemoteEndPoint;

    public long BytesSent => _connection.BytesSent;

    public long BytesReceived => _connection.BytesRead;

    /// <summary>Why the connection closed, first cause wins (set once).</summary>
    public string? CloseReason { get; private set; }

    public static async Task<FrameConnection> ConnectAsync(EndPoint endPoint, Lane lane, TransportOptions options, ILogger logger, CancellationToken ct)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            SocketConnection.SetRecommendedClientOptions(socket);
            Tune(socket, lane, options);
            await socket.ConnectAsync(endPoint, ct);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return Wrap(socket, lane, options, logger);
    }

    /// <summary>Wraps an accepted socket (server side).</summary>
    public static FrameConnection Accept(Socket socket, TransportOptions options, ILogger logger)
    {
        SocketConnection.SetRecommendedServerOptions(socket);
        // Keepalive from the first byte: a peer that vanishes before its Hello is found too.
        Tune(socket, Lane.Demand, options);
        return Wrap(socket, Lane.Bulk, options, logger);
    }

    private static FrameConnection Wrap(Socket socket, Lane lane, TransportOptions options, ILogger logger)
    {
        // Send pipe: the writer pauses at BulkPauseWriterThreshold unflushed bytes and resumes at
        // half, so a producer never races megabytes ahead of the socket. Receive pipe: the socket
        // loop stops reading at ReceivePauseThreshold, which is TCP backpressure to the sender.
        var sendOptions = new PipeOptions(
            pauseWriterThreshold: options.BulkPauseWriterThreshold,
            resumeWriterThreshold: options.BulkPauseWriterThreshold / 2,
            minimumSegmentSize: 64 << 10,
            useSynchronizationContext: false);
        var receiveOptions = new PipeOptions(
            pauseWriterThreshold: options.ReceivePauseThreshold,
            resumeWriterThreshold: options.ReceivePauseThreshold / 2,
            minimumSegmentSize: 64 << 10,
            useSynchronizationContext: false);
        var connection = SocketConnection.Create(socket, sendOptions, receiveOptions, SocketConnectionOptions.None);
        return new FrameConnection(connection, options, $"{lane.ToString().ToLowerInvariant()} {socket.RemoteEndPoint}", logger)
        {
            ReceiveIdleTimeout = IdleTimeoutOf(lane, options),
            Metrics = new ConnectionMetrics(lane),
        };
    }

    private static TimeSpan IdleTimeoutOf(Lane lane, TransportOptions options) =>
        lane == Lane.Bulk ? options.IdleTimeout : Timeout.InfiniteTimeSpan;

    /// <summary>
    /// Socket options per lane. Every socket gets TCP keepalive (<see cref="TransportOptions.KeepAliveIdle"/>).
    /// The bulk lane limits the kernel's unsent backlog (TCP_NOTSENT_LOWAT)
    /// so bytes already handed to the kernel do not build a queue that later traffic waits behind.
    /// </summary>
    public static void Tune(Socket socket, Lane lane, TransportOptions options)
    {
        socket.NoDelay = true;
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, Seconds(options.KeepAliveIdle));
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, Seconds(options.KeepAliveInterval));
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, options.KeepAliveProbes);
        if (lane == Lane.Bulk && options.BulkNotSentLowWatermark > 0 && OperatingSystem.IsLinux())
        {
            // IPPROTO_TCP = 6, TCP_NOTSENT_LOWAT = 25 (linux/tcp.h).
            socket.SetRawSocketOption(6, 25, BitConverter.GetBytes(options.BulkNotSentLowWatermark));
        }
    }

    // The kernel takes whole seconds; at least 1, since 0 is rejected.
    private static int Seconds(TimeSpan span) => (int)Math.Clamp(Math.Ceiling(span.TotalSeconds), 1, int.MaxValue);

    /// <summary>Called by the server once the peer's Hello says which lane this is.</summary>
    public void SetLane(Lane lane)
    {
        Name = $"{lane.ToString().ToLowerInvariant()} {RemoteEndPoint}";
        ReceiveIdleTimeout = IdleTimeoutOf(lane, Options);
        Metrics.SetLane(lane);
        Tune(_connection.Socket, lane, Options);
    }

    /// <summary>Records the first close reason and aborts both pipe loops. Never throws.</summary>
    public void Abort(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }
        CloseReason = reason;
        StreamCloneMetrics.RecordConnectionClosed(reason);
        SharedLog.ConnectionClosed(_logger, Name, reason);
        try
        {
            _connection.Input.CancelPendingRead();
            _connection.Output.CancelPendingFlush();
            _connection.Socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // Already torn down by the peer or the loops: nothing left to stop.
        }
    }

    /// <summary>Best effort: tell the peer why before closing (it may be gone already).</summary>
    public async Task FailAsync(ProtocolError code, string message)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            await SendAsync(FrameType.Error, new ErrorMessage { Code = code, Message = message }, ReadOnlyMemory<byte>.Empty, cts.Token);
            await DrainAsync(TimeSpan.FromSeconds(1));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The peer may have gone; the close reason below is what matters.
        }
        Abort($"{code}: {message}");
    }

    public async ValueTask DisposeAsync()
    {
        Abort("closed locally");
        await _sendLock.WaitAsync();
        try
        {
            await _connection.Output.CompleteAsync();
            await _connection.Input.CompleteAsync();
        }
        finally
        {
            _sendLock.Release();
        }
        _connection.Dispose();
        _sendLock.Dispose();
    }
}
