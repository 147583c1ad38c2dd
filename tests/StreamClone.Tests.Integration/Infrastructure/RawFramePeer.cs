using System.Buffers;
using System.Net;
using System.Net.Sockets;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>
/// A hand-made peer on one loopback connection: it writes frames with the real frame writer and
/// reads them with the real frame reader, but sends whatever the test tells it to, in any order, so
/// a test can play a peer that follows the framing exactly while lying in what the frames say.
/// </summary>
public sealed class RawFramePeer(Socket socket) : IAsyncDisposable, IDisposable
{
    private readonly FrameWriter _writer = new();
    private readonly FrameReader _reader = new(TransportOptions.Default);
    private readonly ArrayBufferWriter<byte> _received = new();
    private int _consumed;

    public static async Task<RawFramePeer> ConnectAsync(IPEndPoint endPoint, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint, ct);
        return new RawFramePeer(socket);
    }

    public Task SendAsync<T>(FrameType type, T header, CancellationToken ct) => SendAsync(type, header, ReadOnlyMemory<byte>.Empty, ct);

    public Task SendAsync<T>(FrameType type, T header, ReadOnlyMemory<byte> payload, CancellationToken ct) =>
        SendFramesAsync((writer, output) =>
        {
            writer.Write(output, type, header, payload.Span);
            return Task.CompletedTask;
        }, ct);

    /// <summary>Lets the test write any number of frames (or raw bytes) into one send.</summary>
    public async Task SendFramesAsync(Func<FrameWriter, IBufferWriter<byte>, Task> write, CancellationToken ct)
    {
        var output = new ArrayBufferWriter<byte>();
        await write(_writer, output);
        await socket.SendAsync(output.WrittenMemory, SocketFlags.None, ct);
    }

    /// <summary>The next whole frame (its header and payload copied out), or null when the peer closed or reset.</summary>
    public async Task<Frame?> ReceiveAsync(CancellationToken ct)
    {
        while (true)
        {
            var buffer = new ReadOnlySequence<byte>(_received.WrittenMemory[_consumed..]);
            if (_reader.TryRead(ref buffer, out var frame))
            {
                var copy = new Frame(frame.Type, frame.Sequence, new ReadOnlySequence<byte>(frame.Header.ToArray()),
                    new ReadOnlySequence<byte>(frame.Payload.ToArray()));
                _consumed = _received.WrittenCount - (int)buffer.Length;
                return copy;
            }
            int read;
            try
            {
                read = await socket.ReceiveAsync(_received.GetMemory(64 << 10), SocketFlags.None, ct);
            }
            catch (SocketException)
            {
                // A reset after the peer's last frame ends the stream like a FIN does.
                return null;
            }
            if (read == 0)
            {
                return null;
            }
            _received.Advance(read);
        }
    }

    /// <summary>
    /// Reads frames until one of <paramref name="type"/> (returning its header); an Error frame on the
    /// way is thrown as the exception it stands for, a close as <see cref="EndOfStreamException"/>.
    /// </summary>
    public async Task<T> ReceiveAsync<T>(FrameType type, CancellationToken ct)
    {
        while (true)
        {
            var frame = await ReceiveAsync(ct) ?? throw new EndOfStreamException($"the peer closed the connection before a {type} frame");
            if (frame.Type == FrameType.Error && type != FrameType.Error)
            {
                var error = frame.DecodeHeader<ErrorMessage>();
                throw new ProtocolViolationException(error.Code, error.Message);
            }
            if (frame.Type == type)
            {
                return frame.DecodeHeader<T>();
            }
        }
    }

    public void Dispose() => socket.Dispose();

    public ValueTask DisposeAsync()
    {
        socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
