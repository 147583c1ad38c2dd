using System.Buffers;
using System.Net;
using System.Net.Sockets;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>
/// A hand-made peer on one loopback connection: it writes frames with the real frame writer and
/// reads them with the real frame reader, but sends whatever the test tells it to, in any order.
/// </summary>
public sealed class RawFramePeer : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly FrameWriter _writer = new();
    private readonly FrameReader _reader = new(TransportOptions.Default);
    private readonly ArrayBufferWriter<byte> _received = new();
    private int _consumed;

    private RawFramePeer(Socket socket) => _socket = socket;

    public static async Task<RawFramePeer> ConnectAsync(IPEndPoint endPoint, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endPoint, ct);
        return new RawFramePeer(socket);
    }

    public async Task SendAsync<T>(FrameType type, T header, CancellationToken ct)
    {
        var output = new ArrayBufferWriter<byte>();
        _writer.Write(output, type, header, []);
        await _socket.SendAsync(output.WrittenMemory, ct);
    }

    /// <summary>Reads frames until one of <paramref name="type"/> (returning its header) or until an Error frame, which is returned as the exception it stands for.</summary>
    public async Task<T> ReceiveAsync<T>(FrameType type, CancellationToken ct)
    {
        while (true)
        {
            var sequence = new ReadOnlySequence<byte>(_received.WrittenMemory[_consumed..]);
            var before = sequence.Length;
            while (_reader.TryRead(ref sequence, out var frame))
            {
                _consumed += (int)(before - sequence.Length);
                before = sequence.Length;
                if (frame.Type == FrameType.Error)
                {
                    var error = frame.DecodeHeader<ErrorMessage>();
                    throw new ProtocolViolationException(error.Code, error.Message);
                }
                if (frame.Type == type)
                {
                    return frame.DecodeHeader<T>();
                }
            }
            var read = await _socket.ReceiveAsync(_received.GetMemory(64 << 10), SocketFlags.None, ct);
            if (read == 0)
            {
                throw new EndOfStreamException($"the peer closed the connection before a {type} frame");
            }
            _received.Advance(read);
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
