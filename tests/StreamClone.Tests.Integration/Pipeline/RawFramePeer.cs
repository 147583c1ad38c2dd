using System.Buffers;
using System.Net;
using System.Net.Sockets;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// A hand-made peer over a real socket: writes exactly the frames a test says and reads only when
/// told to, so it can go silent, stop reading or flood where a real sink never would.
/// </summary>
internal sealed class RawFramePeer : IDisposable
{
    private readonly FrameWriter _writer = new();
    private readonly FrameReader _reader = new(TransportOptions.Default);
    private readonly ArrayBufferWriter<byte> _received = new();
    private int _consumed;

    private RawFramePeer(Socket socket) => Socket = socket;

    public Socket Socket { get; }

    /// <summary>Connects; a small <paramref name="receiveBuffer"/> makes a peer that stops reading close its TCP window soon.</summary>
    public static async Task<RawFramePeer> ConnectAsync(IPEndPoint endPoint, CancellationToken ct, int? receiveBuffer = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        if (receiveBuffer is { } size)
        {
            socket.ReceiveBufferSize = size;
        }
        await socket.ConnectAsync(endPoint, ct);
        return new RawFramePeer(socket);
    }

    public static RawFramePeer Wrap(Socket socket) => new(socket);

    public async Task SendAsync<T>(FrameType type, T header, byte[]? payload = null, CancellationToken ct = default)
    {
        var output = new ArrayBufferWriter<byte>();
        _writer.Write(output, type, header, payload ?? []);
        await Socket.SendAsync(output.WrittenMemory, SocketFlags.None, ct);
    }

    public Task SendHelloAsync(string sessionId, Lane lane = Lane.Bulk, CancellationToken ct = default) =>
        SendAsync(FrameType.Hello, new HelloMessage { Role = "sink", Lane = lane, SessionId = sessionId }, ct: ct);

    /// <summary>The next frame, decoded by <paramref name="decode"/> while its slices are valid; throws at end of stream.</summary>
    public async Task<T> ReadAsync<T>(Func<Frame, T> decode, CancellationToken ct)
    {
        while (true)
        {
            var buffer = new ReadOnlySequence<byte>(_received.WrittenMemory[_consumed..]);
            if (_reader.TryRead(ref buffer, out var frame))
            {
                var value = decode(frame);
                _consumed = _received.WrittenCount - (int)buffer.Length;
                return value;
            }
            var n = await Socket.ReceiveAsync(_received.GetMemory(64 << 10), SocketFlags.None, ct);
            if (n == 0)
            {
                throw new EndOfStreamException("the peer closed the connection");
            }
            _received.Advance(n);
        }
    }

    public Task<T> ReadHeaderAsync<T>(FrameType expected, CancellationToken ct) => ReadAsync(frame =>
    {
        Assert.True(frame.Type == expected, $"expected {expected}, got {frame.Type}");
        return frame.DecodeHeader<T>();
    }, ct);

    /// <summary>Reads frames until an Error frame (returned) or the end of the stream (null).</summary>
    public async Task<ErrorMessage?> ReadErrorAsync(CancellationToken ct)
    {
        try
        {
            while (true)
            {
                var error = await ReadAsync(frame => frame.Type == FrameType.Error ? frame.DecodeHeader<ErrorMessage>() : null, ct);
                if (error is not null)
                {
                    return error;
                }
            }
        }
        catch (Exception ex) when (ex is EndOfStreamException or SocketException)
        {
            return null;
        }
    }

    /// <summary>Completes when the other side has closed the connection (FIN or RST), discarding whatever it sent.</summary>
    public async Task WaitClosedAsync(CancellationToken ct)
    {
        var sink = new byte[64 << 10];
        try
        {
            while (await Socket.ReceiveAsync(sink, SocketFlags.None, ct) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // Reset: closed just the same.
        }
    }

    public void Dispose() => Socket.Dispose();
}
