using System.Buffers.Binary;
using System.Net.Sockets;

namespace StreamClone.Tests.Unit.Nbd;

/// <summary>One transmission-phase request as the fake server received it.</summary>
internal readonly record struct NbdRequest(ushort Type, ulong Cookie, ulong Offset, uint Length);

/// <summary>
/// A scripted NBD server on a real Unix socket: an honest fixed-newstyle handshake (structured replies,
/// base:allocation as context <see cref="ContextId"/>, export of <see cref="ExportSize"/> bytes), then every
/// request goes to <see cref="OnRequest"/>, which returns the raw reply bytes — well-formed or hostile.
/// </summary>
internal sealed class FakeNbdServer : IAsyncDisposable
{
    public const long ExportSize = 1 << 20;
    public const uint ContextId = 7;

    private readonly Socket _listener;
    private readonly string _dir;
    private readonly Task _serve;

    public FakeNbdServer(Func<NbdRequest, byte[]> onRequest, uint? optionReplyLengthOverride = null)
    {
        OnRequest = onRequest;
        _optionReplyLengthOverride = optionReplyLengthOverride;
        _dir = Directory.CreateTempSubdirectory("sc-fakenbd-").FullName;
        Path = System.IO.Path.Combine(_dir, "nbd.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(Path));
        _listener.Listen(1);
        _serve = ServeAsync();
    }

    private readonly uint? _optionReplyLengthOverride;

    public string Path { get; }

    public Func<NbdRequest, byte[]> OnRequest { get; }

    private async Task ServeAsync()
    {
        try
        {
            using var socket = await _listener.AcceptAsync();
            await using var stream = new NetworkStream(socket);
            var greeting = new byte[18];
            BinaryPrimitives.WriteUInt64BigEndian(greeting, 0x4E42444D41474943);
            BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), 0x49484156454F5054);
            BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), 3);
            await stream.WriteAsync(greeting);
            await stream.ReadExactlyAsync(new byte[4]);
            while (true)
            {
                var header = new byte[16];
                await stream.ReadExactlyAsync(header);
                var option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
                await stream.ReadExactlyAsync(new byte[BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12))]);
                if (_optionReplyLengthOverride is { } hostile)
                {
                    await stream.WriteAsync(OptionReply(option, 3, new byte[8], hostile));
                    return;
                }
                switch (option)
                {
                    case 8:
                        await stream.WriteAsync(OptionReply(option, 1, []));
                        break;
                    case 10:
                        var context = new byte[4 + 15];
                        BinaryPrimitives.WriteUInt32BigEndian(context, ContextId);
                        "base:allocation"u8.CopyTo(context.AsSpan(4));
                        await stream.WriteAsync(OptionReply(option, 4, context));
                        await stream.WriteAsync(OptionReply(option, 1, []));
                        break;
                    case 7:
                        var export = new byte[12];
                        BinaryPrimitives.WriteUInt64BigEndian(export.AsSpan(2), ExportSize);
                        BinaryPrimitives.WriteUInt16BigEndian(export.AsSpan(10), 3);
                        await stream.WriteAsync(OptionReply(option, 3, export));
                        await stream.WriteAsync(OptionReply(option, 1, []));
                        goto transmission;
                }
            }
        transmission:
            while (true)
            {
                var request = new byte[28];
                await stream.ReadExactlyAsync(request);
                var parsed = new NbdRequest(BinaryPrimitives.ReadUInt16BigEndian(request.AsSpan(6)), BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(8)),
                    BinaryPrimitives.ReadUInt64BigEndian(request.AsSpan(16)), BinaryPrimitives.ReadUInt32BigEndian(request.AsSpan(24)));
                if (parsed.Type == 2)
                {
                    return;
                }
                await stream.WriteAsync(OnRequest(parsed));
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or EndOfStreamException or ObjectDisposedException)
        {
        }
    }

    private static byte[] OptionReply(uint option, uint type, byte[] data, uint? length = null)
    {
        var reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, 0x0003E889045565A9);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), length ?? (uint)data.Length);
        data.CopyTo(reply.AsSpan(20));
        return reply;
    }

    /// <summary>A structured reply chunk: `u32 magic | u16 flags | u16 type | u64 cookie | u32 length | payload`.</summary>
    public static byte[] Chunk(ulong cookie, ushort type, bool done, byte[] payload, uint? length = null)
    {
        var chunk = new byte[20 + payload.Length];
        BinaryPrimitives.WriteUInt32BigEndian(chunk, 0x668E33EF);
        BinaryPrimitives.WriteUInt16BigEndian(chunk.AsSpan(4), (ushort)(done ? 1 : 0));
        BinaryPrimitives.WriteUInt16BigEndian(chunk.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(chunk.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(16), length ?? (uint)payload.Length);
        payload.CopyTo(chunk.AsSpan(20));
        return chunk;
    }

    /// <summary>OFFSET_DATA: `u64 offset, data`.</summary>
    public static byte[] Data(ulong cookie, ulong offset, byte[] data, bool done = true)
    {
        var payload = new byte[8 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(payload, offset);
        data.CopyTo(payload.AsSpan(8));
        return Chunk(cookie, 1, done, payload);
    }

    /// <summary>BLOCK_STATUS: `u32 context, (u32 length, u32 flags)*`.</summary>
    public static byte[] Status(ulong cookie, uint context, params (uint Length, uint Flags)[] extents)
    {
        var payload = new byte[4 + (8 * extents.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(payload, context);
        for (var i = 0; i < extents.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(4 + (8 * i)), extents[i].Length);
            BinaryPrimitives.WriteUInt32BigEndian(payload.AsSpan(8 + (8 * i)), extents[i].Flags);
        }
        return Chunk(cookie, 5, true, payload);
    }

    /// <summary>ERROR: `u32 error, u16 message length, message`.</summary>
    public static byte[] Error(ulong cookie, uint error)
    {
        var payload = new byte[6];
        BinaryPrimitives.WriteUInt32BigEndian(payload, error);
        return Chunk(cookie, 0x8001, true, payload);
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        await _serve.WaitAsync(TimeSpan.FromSeconds(10));
        Directory.Delete(_dir, recursive: true);
    }
}
