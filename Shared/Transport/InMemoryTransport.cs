using System.IO.Pipelines;
using System.Net;

namespace StreamClone.Shared.Transport;

/// <summary>
/// Two ends of a connection in one process, over a pipe pair with the transport's pause thresholds:
/// session tests run the real handshake, frames and failure policy without a socket (Kestrel's
/// InMemoryTransportConnection). Bytes count as sent once their flush returns, which, as over a socket,
/// waits while the peer has not read past the pause threshold.
/// </summary>
public sealed class InMemoryTransport : DuplexTransport
{
    private readonly PipeReader _input;
    private readonly CountingPipeWriter _output;
    private readonly string _name;
    private InMemoryTransport? _peer;

    private InMemoryTransport(PipeReader input, PipeWriter output, string name)
    {
        _input = input;
        _output = new CountingPipeWriter(output);
        _name = name;
    }

    /// <summary>A connected pair: what one end writes, the other reads.</summary>
    public static (InMemoryTransport Client, InMemoryTransport Server) CreatePair(TransportOptions options)
    {
        var toServer = new Pipe(TransportPipes.SendOptions(options));
        var toClient = new Pipe(TransportPipes.SendOptions(options));
        var client = new InMemoryTransport(toClient.Reader, toServer.Writer, "memory:server");
        var server = new InMemoryTransport(toServer.Reader, toClient.Writer, "memory:client");
        client._peer = server;
        server._peer = client;
        return (client, server);
    }

    public override PipeReader Input => _input;

    public override PipeWriter Output => _output;

    public override long BytesSent => _output.BytesFlushed;

    public override long BytesReceived => _peer?.BytesSent ?? 0;

    public override EndPoint? RemoteEndPoint => null;

    public override string RemoteAddress => _name;

    public override void Shutdown()
    {
        // As a socket shutdown does: our reads and flushes wake, the peer sees the end of its input.
        _input.CancelPendingRead();
        _output.CancelPendingFlush();
        _output.Complete();
    }

    public override async ValueTask DisposeAsync()
    {
        await _output.CompleteAsync();
        await _input.CompleteAsync();
    }

    /// <summary>Counts the bytes whose flush completed: the in-memory counterpart of bytes the socket took.</summary>
    private sealed class CountingPipeWriter(PipeWriter inner) : PipeWriter
    {
        private long _unflushed;
        private long _flushed;

        public long BytesFlushed => Interlocked.Read(ref _flushed);

        public override void Advance(int bytes)
        {
            inner.Advance(bytes);
            _unflushed += bytes;
        }

        public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

        public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

        public override void CancelPendingFlush() => inner.CancelPendingFlush();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
        {
            var pending = Interlocked.Exchange(ref _unflushed, 0);
            var result = await inner.FlushAsync(cancellationToken);
            if (!result.IsCanceled)
            {
                Interlocked.Add(ref _flushed, pending);
            }
            return result;
        }
    }
}
