using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Pipelines.Sockets.Unofficial;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>Plain TCP: P.S.U. runs the socket ↔ pipe loops (Kestrel's shape) with the transport's pause thresholds.</summary>
internal sealed class SocketTransport : DuplexTransport
{
    private readonly SocketConnection _connection;
    private readonly EndPoint? _remote;

    public SocketTransport(Socket socket, TransportOptions options)
    {
        _remote = socket.RemoteEndPoint;
        _connection = SocketConnection.Create(socket, TransportPipes.SendOptions(options), TransportPipes.ReceiveOptions(options), SocketConnectionOptions.None);
    }

    public override PipeReader Input => _connection.Input;

    public override PipeWriter Output => _connection.Output;

    public override long BytesSent => _connection.BytesSent;

    public override long BytesReceived => _connection.BytesRead;

    public override EndPoint? RemoteEndPoint => _remote;

    public override void Tune(Lane lane, TransportOptions options) => TransportSockets.Tune(_connection.Socket, lane, options);

    public override void Shutdown()
    {
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

    public override async ValueTask DisposeAsync()
    {
        await _connection.Output.CompleteAsync();
        await _connection.Input.CompleteAsync();
        _connection.Dispose();
    }
}

/// <summary>The pipe options every transport shares, so backpressure means the same over TCP, TLS and memory.</summary>
internal static class TransportPipes
{
    // One segment holds a batch's worth of bytes or more, so a frame rarely spans segments.
    private const int SegmentSize = 64 << 10;

    /// <summary>
    /// Send pipe: the writer pauses at BulkPauseWriterThreshold unflushed bytes and resumes at half, so a
    /// producer never races megabytes ahead of the wire.
    /// </summary>
    public static PipeOptions SendOptions(TransportOptions options) => new(
        pauseWriterThreshold: options.BulkPauseWriterThreshold,
        resumeWriterThreshold: options.BulkPauseWriterThreshold / 2,
        minimumSegmentSize: SegmentSize,
        useSynchronizationContext: false);

    /// <summary>Receive pipe: the loop stops reading the wire at ReceivePauseThreshold, which is TCP backpressure to the sender.</summary>
    public static PipeOptions ReceiveOptions(TransportOptions options) => new(
        pauseWriterThreshold: options.ReceivePauseThreshold,
        resumeWriterThreshold: options.ReceivePauseThreshold / 2,
        minimumSegmentSize: SegmentSize,
        useSynchronizationContext: false);
}

/// <summary>Socket options per lane, for plain TCP and for the socket under TLS alike.</summary>
public static class TransportSockets
{
    /// <summary>
    /// Every socket gets TCP keepalive (<see cref="TransportOptions.KeepAliveIdle"/>). The bulk lane limits
    /// the kernel's unsent backlog (TCP_NOTSENT_LOWAT) so bytes already handed to the kernel do not build a
    /// queue that later traffic waits behind.
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
}
