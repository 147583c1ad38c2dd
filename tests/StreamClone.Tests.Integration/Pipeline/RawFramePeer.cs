using System.Buffers;
using System.Net.Sockets;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// One connection speaking the frame format by hand (FrameWriter/FrameReader over a bare socket), so a test can
/// play a peer that follows the framing exactly while lying in what the frames say.
/// </summary>
internal sealed class RawFramePeer(Socket socket) : IDisposable
{
    private readonly FrameWriter _writer = new();
    private readonly FrameReader _reader = new(TransportOptions.Default);
    private byte[] _pending = [];

    public async Task SendAsync<T>(FrameType type, T header, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var output = new ArrayBufferWriter<byte>();
        _writer.Write(output, type, header, payload.Span);
        await socket.SendAsync(output.WrittenMemory, ct);
    }

    /// <summary>The next whole frame (its header and payload copied out), or null when the peer closed.</summary>
    public async Task<Frame?> ReceiveAsync(CancellationToken ct)
    {
        var chunk = new byte[64 * 1024];
        while (true)
        {
            var buffer = new ReadOnlySequence<byte>(_pending);
            if (_reader.TryRead(ref buffer, out var frame))
            {
                var copy = new Frame(frame.Type, frame.Sequence, new ReadOnlySequence<byte>(frame.Header.ToArray()),
                    new ReadOnlySequence<byte>(frame.Payload.ToArray()));
                _pending = buffer.ToArray();
                return copy;
            }
            int n;
            try
            {
                n = await socket.ReceiveAsync(chunk, SocketFlags.None, ct);
            }
            catch (SocketException)
            {
                // A reset after the peer's last frame ends the stream like a FIN does.
                return null;
            }
            if (n == 0)
            {
                return null;
            }
            _pending = [.. _pending, .. chunk.AsSpan(0, n)];
        }
    }

    public async Task<T> ReceiveAsync<T>(FrameType type, CancellationToken ct)
    {
        var frame = await ReceiveAsync(ct) ?? throw new InvalidOperationException($"peer closed while {type} was expected");
        Assert.Equal(type, frame.Type);
        return frame.DecodeHeader<T>();
    }

    public void Dispose() => socket.Dispose();
}
