using System.Buffers.Binary;
using System.Text;

namespace StreamClone.Qemu.Nbd;

public sealed partial class NbdClient
{
    // Fixed newstyle handshake (nbd.md §2–§3, NBD doc proto.md "Newstyle negotiation"). All big-endian.
    private const ulong NbdMagic = 0x4E42444D41474943; // "NBDMAGIC"
    private const ulong OptionMagic = 0x49484156454F5054; // "IHAVEOPT"
    private const ulong OptionReplyMagic = 0x0003E889045565A9;
    private const ushort FlagFixedNewstyle = 1;
    private const ushort FlagNoZeroes = 2;
    private const uint OptionGo = 7;
    private const uint OptionStructuredReply = 8;
    private const uint OptionSetMetaContext = 10;
    private const uint ReplyAck = 1;
    private const uint ReplyInfo = 3;
    private const uint ReplyMetaContext = 4;
    private const uint ReplyErrorBit = 0x80000000;
    private const ushort InfoExport = 0;
    private const ushort InfoBlockSize = 3;
    private const ushort TransmissionHasFlags = 1;
    private const string AllocationContext = "base:allocation";

    /// <summary>Option reply data we accept: INFO items are 12–14 bytes, META_CONTEXT 4 + a name (≤ 4096, nbd.md §1),
    /// error messages are strings (≤ 4096). Anything larger is not an answer to what we asked.</summary>
    private const int MaxOptionReplyLength = 4 + 4096 + 64;

    /// <summary>Largest READ we send: 32 MiB is what every server must accept (nbd.md §7).</summary>
    public const int MaxReadLength = 32 << 20;

    private async Task HandshakeAsync(CancellationToken ct)
    {
        var greeting = new byte[18];
        await ReadExactlyAsync(greeting, ct);
        var magic = BinaryPrimitives.ReadUInt64BigEndian(greeting);
        var optionMagic = BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8));
        var serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
        if (magic != NbdMagic || optionMagic != OptionMagic)
        {
            throw new NbdException($"NBD export '{Export}': not a newstyle NBD server (greeting {Convert.ToHexString(greeting.AsSpan(0, 16))})");
        }
        if ((serverFlags & FlagFixedNewstyle) == 0)
        {
            throw new NbdException($"NBD export '{Export}': the server does not offer fixed newstyle negotiation (flags 0x{serverFlags:x4})");
        }
        // Only bits the server offered (a server closes on any other, nbd.md §2).
        var clientFlags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, (uint)(FlagFixedNewstyle | (serverFlags & FlagNoZeroes)));
        await _stream.WriteAsync(clientFlags, ct);

        await SendOptionAsync(OptionStructuredReply, [], ct);
        var (type, data) = await ReadOptionReplyAsync(OptionStructuredReply, ct);
        if (type != ReplyAck)
        {
            throw new NbdException($"NBD export '{Export}': the server refused structured replies ({DescribeError(type, data)})");
        }

        await SendOptionAsync(OptionSetMetaContext, MetaContextRequest(Export, AllocationContext), ct);
        while (true)
        {
            (type, data) = await ReadOptionReplyAsync(OptionSetMetaContext, ct);
            if (type == ReplyAck || (type & ReplyErrorBit) != 0)
            {
                // Without the context every range is read as data: slower, never wrong.
                break;
            }
            if (type == ReplyMetaContext && data.Length >= 4 &&
                Encoding.UTF8.GetString(data.AsSpan(4)) == AllocationContext)
            {
                _allocationContextId = BinaryPrimitives.ReadUInt32BigEndian(data);
                HasAllocationContext = true;
            }
        }

        await SendOptionAsync(OptionGo, GoRequest(Export), ct);
        var haveExport = false;
        while (true)
        {
            (type, data) = await ReadOptionReplyAsync(OptionGo, ct);
            if (type == ReplyAck)
            {
                break;
            }
            if ((type & ReplyErrorBit) != 0)
            {
                throw new NbdException($"NBD export '{Export}': the server refused to open it ({DescribeError(type, data)})");
            }
            if (type != ReplyInfo || data.Length < 2)
            {
                continue;
            }
            switch (BinaryPrimitives.ReadUInt16BigEndian(data))
            {
                case InfoExport:
                    if (data.Length != 12)
                    {
                        throw new NbdException($"NBD export '{Export}': NBD_INFO_EXPORT of {data.Length} bytes, expected 12");
                    }
                    var size = BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
                    var flags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
                    if (size > long.MaxValue / 2 || (flags & TransmissionHasFlags) == 0)
                    {
                        throw new NbdException($"NBD export '{Export}': export size {size} / flags 0x{flags:x4} out of range");
                    }
                    Size = (long)size;
                    haveExport = true;
                    break;
                case InfoBlockSize:
                    if (data.Length != 14)
                    {
                        throw new NbdException($"NBD export '{Export}': NBD_INFO_BLOCK_SIZE of {data.Length} bytes, expected 14");
                    }
                    var maximum = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(10));
                    // Our reads are whole 4 KiB chunks (the disk's tail at worst 512-byte sectors): a server that
                    // cannot take 4 KiB at once is not one we can read a disk from.
                    if (maximum < 4096)
                    {
                        throw new NbdException($"NBD export '{Export}': maximum payload {maximum} bytes is below 4096");
                    }
                    MaxRead = (int)Math.Min(maximum, MaxReadLength);
                    break;
            }
        }
        if (!haveExport)
        {
            throw new NbdException($"NBD export '{Export}': the server acknowledged NBD_OPT_GO without NBD_INFO_EXPORT");
        }
    }

    private string DescribeError(uint type, byte[] message) =>
        $"reply 0x{type:x8}{(message.Length > 0 ? $": {Encoding.UTF8.GetString(message)}" : "")}";

    private async Task SendOptionAsync(uint option, byte[] data, CancellationToken ct)
    {
        var message = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(message, OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(message.AsSpan(12), (uint)data.Length);
        data.CopyTo(message.AsSpan(16));
        await _stream.WriteAsync(message, ct);
    }

    /// <summary>One option reply: `u64 magic | u32 option | u32 type | u32 length | data` (nbd.md §3).</summary>
    private async Task<(uint Type, byte[] Data)> ReadOptionReplyAsync(uint option, CancellationToken ct)
    {
        var header = new byte[20];
        await ReadExactlyAsync(header, ct);
        var magic = BinaryPrimitives.ReadUInt64BigEndian(header);
        var echoed = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
        var type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        if (magic != OptionReplyMagic || echoed != option)
        {
            throw new NbdException($"NBD export '{Export}': bad option reply (magic 0x{magic:x16}, option {echoed}, expected {option})");
        }
        if (length > MaxOptionReplyLength)
        {
            throw new NbdException($"NBD export '{Export}': option reply of {length} bytes (at most {MaxOptionReplyLength} expected)");
        }
        var data = new byte[length];
        await ReadExactlyAsync(data, ct);
        return (type, data);
    }

    /// <summary>SET_META_CONTEXT data: `u32 namelen, name, u32 nqueries, (u32 len, query)*`.</summary>
    private static byte[] MetaContextRequest(string export, string query)
    {
        var name = Encoding.UTF8.GetBytes(export);
        var q = Encoding.UTF8.GetBytes(query);
        var data = new byte[4 + name.Length + 4 + 4 + q.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
        name.CopyTo(data.AsSpan(4));
        BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(4 + name.Length), 1);
        BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(8 + name.Length), (uint)q.Length);
        q.CopyTo(data.AsSpan(12 + name.Length));
        return data;
    }

    /// <summary>GO data: `u32 namelen, name, u16 n, n × u16 info` — asks for BLOCK_SIZE (as QEMU does, nbd.md §4).</summary>
    private static byte[] GoRequest(string export)
    {
        var name = Encoding.UTF8.GetBytes(export);
        var data = new byte[4 + name.Length + 2 + 2];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)name.Length);
        name.CopyTo(data.AsSpan(4));
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + name.Length), 1);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + name.Length), InfoBlockSize);
        return data;
    }
}
