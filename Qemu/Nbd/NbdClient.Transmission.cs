using System.Buffers.Binary;
using System.Text;

namespace StreamClone.Qemu.Nbd;

public sealed partial class NbdClient
{
    // Transmission phase (nbd.md §5–§6). Request: `u32 magic | u16 flags | u16 type | u64 cookie | u64 offset | u32 length`.
    private const uint RequestMagic = 0x25609513;
    private const uint SimpleReplyMagic = 0x67446698;
    private const uint StructuredReplyMagic = 0x668E33EF;
    private const ushort CommandRead = 0;
    private const ushort CommandDisconnect = 2;
    private const ushort CommandBlockStatus = 7;
    private const ushort ReplyFlagDone = 1;
    private const ushort ChunkNone = 0;
    private const ushort ChunkOffsetData = 1;
    private const ushort ChunkOffsetHole = 2;
    private const ushort ChunkBlockStatus = 5;
    private const ushort ChunkErrorBit = 0x8000;
    private const uint StateZero = 2;

    /// <summary>Extents one BLOCK_STATUS chunk may carry: a 32 MiB range in 512-byte sectors is 65536, more is not
    /// an answer to any request we send.</summary>
    private const int MaxExtentsPerReply = 65536;

    /// <summary>An error chunk's message is a string (≤ 4096 bytes, nbd.md §1) after `u32 error, u16 length`, plus an optional u64 offset.</summary>
    private const int MaxErrorChunkLength = 6 + 4096 + 8;

    private uint _allocationContextId;
    private ulong _nextCookie;

    /// <summary>Fills <paramref name="destination"/> from the export at <paramref name="offset"/> (split into reads of at most <see cref="MaxRead"/>).</summary>
    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
    {
        CheckRange(offset, destination.Length);
        for (var done = 0; done < destination.Length;)
        {
            var piece = Math.Min(destination.Length - done, MaxRead);
            await ExchangeAsync(CommandRead, offset + done, piece, destination.Slice(done, piece), ct);
            done += piece;
        }
    }

    /// <summary>
    /// Which parts of [<paramref name="offset"/>, +<paramref name="length"/>) read as zeros. The extents are
    /// contiguous from <paramref name="offset"/> and cover at least one byte, possibly less than the whole range
    /// (a server may answer for a prefix); without the base:allocation context the whole range is one data extent.
    /// </summary>
    public async ValueTask<IReadOnlyList<NbdExtent>> GetExtentsAsync(long offset, int length, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        CheckRange(offset, length);
        if (!HasAllocationContext)
        {
            return [new NbdExtent(offset, length, Zero: false)];
        }
        var extents = new List<NbdExtent>();
        await ExchangeAsync(CommandBlockStatus, offset, length, extents, ct);
        return extents;
    }

    private void CheckRange(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Size - length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside export '{Export}' ({Size} bytes)");
        }
    }

    /// <summary>One request and all its reply chunks, under the gate; any framing doubt leaves the connection unusable.</summary>
    private async ValueTask ExchangeAsync(ushort command, long offset, int length, object target, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_broken)
            {
                throw new NbdException($"NBD export '{Export}': the connection is out of step after an earlier failure");
            }
            var cookie = ++_nextCookie;
            var completed = false;
            try
            {
                await SendRequestAsync(command, cookie, offset, length, ct);
                if (command == CommandRead)
                {
                    await ReceiveReadAsync(cookie, offset, (Memory<byte>)target, ct);
                }
                else
                {
                    await ReceiveBlockStatusAsync(cookie, offset, length, (List<NbdExtent>)target, ct);
                }
                completed = true;
            }
            finally
            {
                // A request error reported in a well-formed reply (NbdRequestException) leaves the stream in step.
                if (!completed && !_requestFailedInStep)
                {
                    _broken = true;
                }
                _requestFailedInStep = false;
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private bool _requestFailedInStep;

    private async ValueTask SendRequestAsync(ushort command, ulong cookie, long offset, int length, CancellationToken ct)
    {
        var request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), 0);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), command);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), (uint)length);
        await _stream.WriteAsync(request, ct);
    }

    private readonly record struct ChunkHeader(ushort Flags, ushort Type, uint Length)
    {
        public bool Done => (Flags & ReplyFlagDone) != 0;
    }

    /// <summary>
    /// The next reply for <paramref name="cookie"/>: a structured chunk header, or a simple reply (allowed only
    /// to carry an error once structured replies are on, nbd.md §5), which ends the request.
    /// </summary>
    private async ValueTask<ChunkHeader> ReadChunkHeaderAsync(ulong cookie, CancellationToken ct)
    {
        var magicBytes = new byte[4];
        await ReadExactlyAsync(magicBytes, ct);
        var magic = BinaryPrimitives.ReadUInt32BigEndian(magicBytes);
        if (magic == SimpleReplyMagic)
        {
            var rest = new byte[12];
            await ReadExactlyAsync(rest, ct);
            var error = BinaryPrimitives.ReadUInt32BigEndian(rest);
            CheckCookie(BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4)), cookie);
            if (error == 0)
            {
                throw new NbdException($"NBD export '{Export}': simple success reply after structured replies were negotiated");
            }
            _requestFailedInStep = true;
            throw new NbdException($"NBD export '{Export}': the server failed the request (error {error})");
        }
        if (magic != StructuredReplyMagic)
        {
            throw new NbdException($"NBD export '{Export}': reply magic 0x{magic:x8}, expected 0x{StructuredReplyMagic:x8}");
        }
        var header = new byte[16];
        await ReadExactlyAsync(header, ct);
        CheckCookie(BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(4)), cookie);
        return new ChunkHeader(BinaryPrimitives.ReadUInt16BigEndian(header), BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2)),
            BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)));
    }

    private void CheckCookie(ulong got, ulong expected)
    {
        if (got != expected)
        {
            throw new NbdException($"NBD export '{Export}': reply for cookie {got}, expected {expected} (one request in flight)");
        }
    }

    private async ValueTask ReceiveReadAsync(ulong cookie, long offset, Memory<byte> destination, CancellationToken ct)
    {
        var length = destination.Length;
        var covered = new List<(long Start, long Length)>();
        string? error = null;
        while (true)
        {
            var header = await ReadChunkHeaderAsync(cookie, ct);
            switch (header.Type)
            {
                case ChunkOffsetData:
                    {
                        if (header.Length < 9 || header.Length - 8 > (uint)length)
                        {
                            throw new NbdException($"NBD export '{Export}': data chunk of {header.Length} bytes for a {length}-byte read");
                        }
                        var at = await ReadChunkOffsetAsync(offset, length, header.Length - 8, ct);
                        await ReadExactlyAsync(destination.Slice((int)at, (int)(header.Length - 8)), ct);
                        covered.Add((at, header.Length - 8));
                        break;
                    }
                case ChunkOffsetHole:
                    {
                        if (header.Length != 12)
                        {
                            throw new NbdException($"NBD export '{Export}': hole chunk of {header.Length} bytes, expected 12");
                        }
                        var body = new byte[12];
                        await ReadExactlyAsync(body, ct);
                        var size = BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(8));
                        var at = PlaceInRequest(BinaryPrimitives.ReadUInt64BigEndian(body), size, offset, length);
                        destination.Slice((int)at, (int)size).Span.Clear();
                        covered.Add((at, size));
                        break;
                    }
                case ChunkNone:
                    if (header.Length != 0 || !header.Done)
                    {
                        throw new NbdException($"NBD export '{Export}': NONE chunk of {header.Length} bytes without DONE");
                    }
                    break;
                default:
                    error ??= await ReadUnexpectedChunkAsync(header, ct);
                    break;
            }
            if (header.Done)
            {
                break;
            }
        }
        if (error is not null)
        {
            _requestFailedInStep = true;
            throw new NbdException($"NBD export '{Export}': read of [{offset}, +{length}) failed: {error}");
        }
        // Chunks must not overlap and must cover the whole read (nbd.md §5).
        covered.Sort();
        long next = 0;
        foreach (var (start, size) in covered)
        {
            if (start != next)
            {
                throw new NbdException($"NBD export '{Export}': read of [{offset}, +{length}) answered with {(start < next ? "overlapping chunks" : $"a gap at +{next}")}");
            }
            next = start + size;
        }
        if (next != length)
        {
            throw new NbdException($"NBD export '{Export}': read of [{offset}, +{length}) answered with {next} bytes");
        }
    }

    /// <summary>Reads a chunk's u64 offset and places <paramref name="size"/> bytes from it inside the request; returns the position in the request.</summary>
    private async ValueTask<long> ReadChunkOffsetAsync(long requestOffset, int requestLength, uint size, CancellationToken ct)
    {
        var body = new byte[8];
        await ReadExactlyAsync(body, ct);
        return PlaceInRequest(BinaryPrimitives.ReadUInt64BigEndian(body), size, requestOffset, requestLength);
    }

    private long PlaceInRequest(ulong chunkOffset, uint size, long requestOffset, int requestLength)
    {
        // Compared without adding: chunkOffset - requestOffset ≤ requestLength - size.
        if (size == 0 || chunkOffset < (ulong)requestOffset || size > (uint)requestLength ||
            chunkOffset - (ulong)requestOffset > (ulong)(requestLength - size))
        {
            throw new NbdException($"NBD export '{Export}': reply chunk [{chunkOffset}, +{size}) outside the request [{requestOffset}, +{requestLength})");
        }
        return (long)(chunkOffset - (ulong)requestOffset);
    }

    /// <summary>An error chunk (returns its text, keeps framing) or a chunk type this request cannot have (a violation).</summary>
    private async ValueTask<string> ReadUnexpectedChunkAsync(ChunkHeader header, CancellationToken ct)
    {
        if ((header.Type & ChunkErrorBit) == 0)
        {
            throw new NbdException($"NBD export '{Export}': unexpected reply chunk type {header.Type}");
        }
        if (header.Length < 6 || header.Length > MaxErrorChunkLength)
        {
            throw new NbdException($"NBD export '{Export}': error chunk of {header.Length} bytes");
        }
        var body = new byte[header.Length];
        await ReadExactlyAsync(body, ct);
        var error = BinaryPrimitives.ReadUInt32BigEndian(body);
        var messageLength = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(4));
        if (messageLength > header.Length - 6)
        {
            throw new NbdException($"NBD export '{Export}': error message of {messageLength} bytes in a {header.Length}-byte chunk");
        }
        var message = Encoding.UTF8.GetString(body.AsSpan(6, messageLength));
        return $"error {error}{(message.Length > 0 ? $" ({message})" : "")}";
    }

    private async ValueTask ReceiveBlockStatusAsync(ulong cookie, long offset, int length, List<NbdExtent> extents, CancellationToken ct)
    {
        string? error = null;
        while (true)
        {
            var header = await ReadChunkHeaderAsync(cookie, ct);
            if (header.Type == ChunkBlockStatus)
            {
                if (header.Length < 12 || header.Length > 4 + (8L * MaxExtentsPerReply) || (header.Length - 4) % 8 != 0 || extents.Count > 0)
                {
                    throw new NbdException($"NBD export '{Export}': block status chunk of {header.Length} bytes (or a second one)");
                }
                var body = new byte[header.Length];
                await ReadExactlyAsync(body, ct);
                var context = BinaryPrimitives.ReadUInt32BigEndian(body);
                if (context != _allocationContextId)
                {
                    throw new NbdException($"NBD export '{Export}': block status for context {context}, expected {_allocationContextId}");
                }
                var at = offset;
                var end = offset + length;
                for (var i = 4; i < body.Length && at < end; i += 8)
                {
                    var extentLength = BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(i));
                    var flags = BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(i + 4));
                    if (extentLength == 0)
                    {
                        throw new NbdException($"NBD export '{Export}': block status extent of length 0");
                    }
                    // The last extent may reach past the request; we only keep what was asked.
                    var used = Math.Min(extentLength, end - at);
                    extents.Add(new NbdExtent(at, used, (flags & StateZero) != 0));
                    at += used;
                }
            }
            else if (header.Type == ChunkNone && header.Length == 0 && header.Done)
            {
            }
            else
            {
                error ??= await ReadUnexpectedChunkAsync(header, ct);
            }
            if (header.Done)
            {
                break;
            }
        }
        if (error is not null)
        {
            _requestFailedInStep = true;
            throw new NbdException($"NBD export '{Export}': block status of [{offset}, +{length}) failed: {error}");
        }
        if (extents.Count == 0)
        {
            throw new NbdException($"NBD export '{Export}': block status of [{offset}, +{length}) answered without extents");
        }
    }
}
