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
/// a test can play a peer that follows the framing exactly while lying in what the frames say, or
/// one that goes silent, stops reading or floods where a real peer never would.
/// </summary>
public sealed class RawFramePeer(Socket socket) : IAsyncDisposable, IDisposable
{
    public Socket Socket { get; } = socket;

    private readonly FrameWriter _writer = new();
    private readonly FrameReader _reader = new(TransportOptions.Default);
    private readonly ArrayBufferWriter<byte> _received = new();
    private int _consumed;

    /// <summary>Connects; a small <paramref name="receiveBuffer"/> makes a peer that stops reading close its TCP window soon.</summary>
    public static async Task<RawFramePeer> ConnectAsync(IPEndPoint endPoint, CancellationToken ct, int? receiveBuffer = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBuffer is { } size)
        {
            socket.ReceiveBufferSize = size;
        }
        await socket.ConnectAsync(endPoint, ct);
        return new RawFramePeer(socket);
    }

    public static RawFramePeer Wrap(Socket socket) => new(socket);

    public Task SendHelloAsync(string sessionId, Lane lane = Lane.Bulk, CancellationToken ct = default) =>
        SendAsync(FrameType.Hello, new HelloMessage { Role = "sink", Lane = lane, SessionId = sessionId }, ct);

    public Task SendAsync<T>(FrameType type, T header, CancellationToken ct = default) => SendAsync(type, header, ReadOnlyMemory<byte>.Empty, ct);

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
        await Socket.SendAsync(output.WrittenMemory, SocketFlags.None, ct);
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
                read = await Socket.ReceiveAsync(_received.GetMemory(64 << 10), SocketFlags.None, ct);
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

    /// <summary>The next frame, which must be of <paramref name="expected"/> type (an Error frame fails the test with its text).</summary>
    public async Task<T> ReadHeaderAsync<T>(FrameType expected, CancellationToken ct)
    {
        var frame = await ReceiveAsync(ct) ?? throw new EndOfStreamException("the peer closed the connection");
        Assert.True(frame.Type == expected,
            $"expected {expected}, got {frame.Type}{(frame.Type == FrameType.Error ? ": " + frame.DecodeHeader<ErrorMessage>().Message : "")}");
        return frame.DecodeHeader<T>();
    }

    /// <summary>Reads frames until an Error frame (returned) or the end of the stream (null).</summary>
    public async Task<ErrorMessage?> ReadErrorAsync(CancellationToken ct)
    {
        while (await ReceiveAsync(ct) is { } frame)
        {
            if (frame.Type == FrameType.Error)
            {
                return frame.DecodeHeader<ErrorMessage>();
            }
        }
        return null;
    }

    /// <summary>Completes when the other side has closed the connection (FIN or RST), discarding whatever it sent.</summary>
    public async Task WaitClosedAsync(CancellationToken ct)
    {
        var discard = new byte[64 << 10];
        try
        {
            while (await Socket.ReceiveAsync(discard, SocketFlags.None, ct) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // Reset: closed just the same.
        }
    }

    public void Dispose() => Socket.Dispose();

    public ValueTask DisposeAsync()
    {
        Socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
