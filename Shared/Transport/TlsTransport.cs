using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>
/// TLS over one socket: an authenticated <see cref="SslStream"/> with our own two loops between it and the
/// pipes (the shape of P.S.U.'s socket loops), so the pipes keep the transport's pause thresholds: the send
/// loop encrypts what the frame writer flushed, the receive loop decrypts ahead of the frame reader until
/// ReceivePauseThreshold bytes wait. Wire bytes are counted at the socket, under the TLS records.
/// </summary>
internal sealed class TlsTransport : DuplexTransport
{
    // One TLS record carries at most 16 KiB of plaintext; reading 64 KiB at a time lets SslStream hand over several.
    private const int ReadSize = 64 << 10;

    private readonly Socket _socket;
    private readonly CountingStream _wire;
    private readonly SslStream _tls;
    private readonly Pipe _send;
    private readonly Pipe _receive;
    private readonly EndPoint? _remote;
    private readonly Task _sending;
    private readonly Task _receiving;
    private long _delivered;
    private int _shutdown;

    public TlsTransport(Socket socket, CountingStream wire, SslStream tls, TransportOptions options)
    {
        _socket = socket;
        _remote = socket.RemoteEndPoint;
        _wire = wire;
        _tls = tls;
        RemoteCertificate = tls.RemoteCertificate as X509Certificate2 ?? (tls.RemoteCertificate is { } other ? new X509Certificate2(other) : null);
        _send = new Pipe(TransportPipes.SendOptions(options));
        _receive = new Pipe(TransportPipes.ReceiveOptions(options));
        _sending = Task.Run(SendLoopAsync);
        _receiving = Task.Run(ReceiveLoopAsync);
    }

    public override PipeReader Input => _receive.Reader;

    public override PipeWriter Output => _send.Writer;

    public override long BytesSent => _wire.BytesWritten;

    public override long BytesReceived => _wire.BytesRead;

    public override long BytesDelivered => Interlocked.Read(ref _delivered);

    public override EndPoint? RemoteEndPoint => _remote;

    public override X509Certificate2? RemoteCertificate { get; }

    public override void Tune(Lane lane, TransportOptions options) => TransportSockets.Tune(_socket, lane, options);

    private async Task SendLoopAsync()
    {
        var reader = _send.Reader;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync();
                var buffer = result.Buffer;
                if (result.IsCanceled)
                {
                    break;
                }
                foreach (var segment in buffer)
                {
                    // Completes once the records are in the socket's send buffer: the wait here is TCP backpressure,
                    // and while it lasts the send pipe fills to its pause threshold and stops the frame writer.
                    await _tls.WriteAsync(segment);
                    Interlocked.Add(ref _delivered, segment.Length);
                }
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
            await reader.CompleteAsync();
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            await reader.CompleteAsync(ex);
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var writer = _receive.Writer;
        try
        {
            while (true)
            {
                var read = await _tls.ReadAsync(writer.GetMemory(ReadSize));
                if (read == 0)
                {
                    break;
                }
                writer.Advance(read);
                var flush = await writer.FlushAsync();
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
            await writer.CompleteAsync();
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            await writer.CompleteAsync(ex);
        }
    }

    public override void Shutdown()
    {
        if (Interlocked.Exchange(ref _shutdown, 1) != 0)
        {
            return;
        }
        try
        {
            _receive.Reader.CancelPendingRead();
            _send.Writer.CancelPendingFlush();
            _send.Reader.CancelPendingRead();
            // Wakes both loops' pending socket operations (a TLS read returns 0, a write fails).
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // Already torn down: nothing left to stop.
        }
    }

    public override async ValueTask DisposeAsync()
    {
        Shutdown();
        await _send.Writer.CompleteAsync();
        await _receive.Reader.CompleteAsync();
        // Both loops end once the socket is shut: each catches its own error, so this never throws.
        await Task.WhenAll(_sending, _receiving);
        await _tls.DisposeAsync();
        _socket.Dispose();
        RemoteCertificate?.Dispose();
    }
}

/// <summary>The socket's stream with byte counters, under SslStream: the wire bytes, TLS overhead included.</summary>
internal sealed class CountingStream(Stream inner) : Stream
{
    private long _read;
    private long _written;

    public long BytesRead => Interlocked.Read(ref _read);

    public long BytesWritten => Interlocked.Read(ref _written);

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Count(await inner.ReadAsync(buffer, cancellationToken));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count)
    {
        inner.Write(buffer, offset, count);
        Interlocked.Add(ref _written, count);
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await inner.WriteAsync(buffer, cancellationToken);
        Interlocked.Add(ref _written, buffer.Length);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush() => inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync();
        await base.DisposeAsync();
    }

    private int Count(int read)
    {
        Interlocked.Add(ref _read, read);
        return read;
    }
}
