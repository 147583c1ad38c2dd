using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Qemu.Migration;

// The "ram" section's records (§6; QEMU 7.2 migration/ram.c ram_load_precopy, ram_block_from_stream,
// save_page_header, ram_save_setup).
public sealed partial class QemuStreamReader
{
    private const int PageSize = F.TargetPageSize;

    /// <summary>Low bits of a record word are flags (ram.c: addr &amp; ~TARGET_PAGE_MASK); the rest is the block offset.</summary>
    private const long FlagMask = PageSize - 1;

    /// <summary>Largest named page record: be64 word + u8 len + 255 name bytes + page.</summary>
    private const int MaxPageRecordBytes = 8 + 1 + 255 + PageSize;

    /// <summary>The one copy target for pages that straddle two pipe segments; reused for every such page.</summary>
    private readonly byte[] _straddle = new byte[PageSize];

    private RamBlockInfo[] _blocks = [];

    /// <summary>Block names as raw bytes, so a named record is matched without allocating a string.</summary>
    private byte[][] _blockNames = [];

    /// <summary>"Current block" of CONTINUE records; persists across chunks (ram.c last_recv_block).</summary>
    private int _currentBlock = -1;

    /// <summary>One bit per page and block: which pages were sent (duplicates, completeness).</summary>
    private ulong[][] _seen = [];

    private int _lastBlock = -1;
    private long _lastOffset = -PageSize;

    private bool TryReadRamRecord(ref ReadOnlySequence<byte> buffer, ref StepEvent ev)
    {
        // Fast path: a CONTINUE page record wholly inside the first segment (the common case at MiB/s rates).
        var first = buffer.FirstSpan;
        if (first.Length >= 8 + PageSize)
        {
            var fastWord = BinaryPrimitives.ReadInt64BigEndian(first);
            if ((fastWord & FlagMask) == (F.RamFlagPage | F.RamFlagContinue) && _currentBlock >= 0)
            {
                var fastOffset = fastWord & ~FlagMask;
                CheckOffset(_currentBlock, fastOffset, _position);
                ev.Kind = EventKind.Page;
                ev.Block = _currentBlock;
                ev.Offset = fastOffset;
                ev.Page = buffer.Slice(8, PageSize);
                buffer = buffer.Slice(8 + PageSize);
                CountRecord(_currentBlock, fastOffset);
                Statistics.PageRecords++;
                return true;
            }
        }

        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadBigEndian(out long word))
        {
            return false;
        }

        var flags = (int)(word & FlagMask);
        var offset = word & ~FlagMask;
        if (word == F.RamFlagEos)
        {
            buffer = buffer.Slice(reader.Position);
            _state = State.Footer;
            return true;
        }

        switch (flags & ~F.RamFlagContinue)
        {
            case F.RamFlagPage:
                {
                    if (!TryReadBlock(ref reader, flags, out var block))
                    {
                        return false;
                    }

                    CheckOffset(block, offset, _position);
                    if (reader.Remaining < PageSize)
                    {
                        return false;
                    }

                    ev.Kind = EventKind.Page;
                    ev.Block = block;
                    ev.Offset = offset;
                    ev.Page = reader.UnreadSequence.Slice(0, PageSize);
                    reader.Advance(PageSize);
                    CountRecord(block, offset);
                    Statistics.PageRecords++;
                    break;
                }

            case F.RamFlagZero:
                {
                    if (!TryReadBlock(ref reader, flags, out var block) || !reader.TryRead(out var fill))
                    {
                        return false;
                    }

                    CheckOffset(block, offset, _position);
                    ev.Kind = EventKind.Filled;
                    ev.Block = block;
                    ev.Offset = offset;
                    ev.Fill = fill;
                    CountRecord(block, offset);
                    Statistics.FilledRecords++;
                    break;
                }

            case F.RamFlagMemSize:
                if (!_inStartChunk || _blocks.Length != 0 || (flags & F.RamFlagContinue) != 0)
                {
                    ThrowMalformed(_position, "MEM_SIZE only as the first record of the ram START chunk", $"record word {Hex((ulong)word)}");
                }

                if (!TryReadBlockList(ref reader, offset))
                {
                    return false;
                }

                ev.Kind = EventKind.Blocks;
                break;

            case F.RamFlagXbzrle:
                ThrowUnsupported(_position, "XBZRLE page record (capability xbzrle; a background snapshot never sends it)");
                break;
            case F.RamFlagCompressPage:
                ThrowUnsupported(_position, "COMPRESS_PAGE record (capability compress; a background snapshot never sends it)");
                break;
            case F.RamFlagHook:
                ThrowUnsupported(_position, "HOOK record (RDMA migration)");
                break;
            default:
                ThrowMalformed(_position, "a ram record (PAGE 0x08, ZERO 0x02, MEM_SIZE 0x04, EOS 0x10, optionally | CONTINUE 0x20)",
                    $"record word {Hex((ulong)word)} (flags {Hex((ulong)flags)})");
                break;
        }

        if (ev.Kind != EventKind.Blocks && _blocks.Length == 0)
        {
            ThrowMalformed(_position, "the MEM_SIZE block list before any page", $"record word {Hex((ulong)word)}");
        }

        buffer = buffer.Slice(reader.Position);
        return true;
    }

    // ram.c ram_block_from_stream: CONTINUE → the current block; otherwise a counted idstr names it.
    private bool TryReadBlock(ref SequenceReader<byte> reader, int flags, out int block)
    {
        if ((flags & F.RamFlagContinue) != 0)
        {
            if (_currentBlock < 0)
            {
                ThrowMalformed(_position, "a named block before the first CONTINUE record", "CONTINUE with no current block");
            }

            block = _currentBlock;
            return true;
        }

        block = -1;
        if (!TryReadCountedString(ref reader, out var name))
        {
            return false;
        }

        for (var i = 0; i < _blockNames.Length; i++)
        {
            if (SequenceEquals(name, _blockNames[i]))
            {
                block = i;
                break;
            }
        }

        if (block < 0)
        {
            ThrowMalformed(_position + 8, "a block name from the MEM_SIZE list", $"unknown ramblock \"{Encoding.Latin1.GetString(name)}\"");
        }

        _currentBlock = block;
        Statistics.NamedRecords++;
        return true;
    }

    // §6.3 ram.c ram_save_setup / ram_load_precopy case MEM_SIZE: entries (counted idstr, be64 used_length) until
    // their lengths add up to the total in the record word. No page_size (needs postcopy ADVISE, rejected) and no
    // GPA (needs x-ignore-shared, rejected) entries can occur.
    private bool TryReadBlockList(ref SequenceReader<byte> reader, long total)
    {
        if (total > _options.MaxRamBytes)
        {
            ThrowUnsupported(_position, $"MEM_SIZE total {total} bytes above QemuStreamReaderOptions.MaxRamBytes ({_options.MaxRamBytes})");
        }

        var blocks = new List<RamBlockInfo>();
        var names = new List<byte[]>();
        long sum = 0;
        while (sum < total)
        {
            var entryOffset = _position + reader.Consumed;
            if (blocks.Count >= DeviceStateBlob.MaxBlocks)
            {
                ThrowMalformed(entryOffset, $"at most {DeviceStateBlob.MaxBlocks} RAM blocks adding up to {total} bytes", $"more (sum so far {sum})");
            }

            if (!TryReadCountedString(ref reader, out var nameSeq) || !reader.TryReadBigEndian(out long used))
            {
                return false;
            }

            var nameBytes = nameSeq.ToArray();
            var name = Encoding.Latin1.GetString(nameBytes);
            if (nameBytes.Length == 0 || names.Exists(n => n.AsSpan().SequenceEqual(nameBytes)))
            {
                ThrowMalformed(entryOffset, "a non-empty, unique RAM block name", $"\"{name}\"");
            }

            if (used <= 0 || used > total - sum)
            {
                ThrowMalformed(entryOffset + 1 + nameBytes.Length,
                    $"a used_length of block \"{name}\" in 1..{total - sum} (the MEM_SIZE total {total} minus the blocks before)", used.ToString());
            }

            sum += used;
            blocks.Add(new RamBlockInfo(name, used));
            names.Add(nameBytes);
        }

        _blocks = [.. blocks];
        _blockNames = [.. names];
        _seen = [.. blocks.Select(b => new ulong[(((b.UsedLength + PageSize - 1) / PageSize) + 63) / 64])];
        return true;
    }

    private void CheckOffset(int block, long offset, long recordOffset)
    {
        // ram.c host_from_ram_block_offset → offset_in_ramblock: offset < used_length, else "Illegal RAM offset".
        if ((ulong)offset >= (ulong)_blocks[block].UsedLength)
        {
            ThrowMalformed(recordOffset, $"a page offset below block \"{_blocks[block].Name}\"'s used_length {_blocks[block].UsedLength}",
                Hex((ulong)offset));
        }
    }

    private void CountRecord(int block, long offset)
    {
        var page = offset / PageSize;
        ref var word = ref _seen[block][page >> 6];
        var bit = 1UL << (int)(page & 63);
        if ((word & bit) != 0)
        {
            Statistics.DuplicateRecords++;
        }

        word |= bit;
        if (block != _lastBlock || offset != _lastOffset + PageSize)
        {
            Statistics.OutOfOrderRecords++;
        }

        _lastBlock = block;
        _lastOffset = offset;
    }

    /// <summary>At the end of the stream: every page of every block must have been sent (see RequireEveryPage).</summary>
    private void CheckEveryPageSeen()
    {
        for (var block = 0; block < _blocks.Length; block++)
        {
            var pages = (_blocks[block].UsedLength + PageSize - 1) / PageSize;
            long seen = 0;
            foreach (var word in _seen[block])
            {
                seen += BitOperations.PopCount(word);
            }

            if (seen != pages)
            {
                throw new QemuStreamException(_position,
                    $"Incomplete QEMU migration stream: block \"{_blocks[block].Name}\" got {seen} of its {pages} pages by the end of the stream " +
                    "(multifd sends pages on other channels, which this reader does not see; a background snapshot sends every page once).");
            }
        }
    }

    private static bool SequenceEquals(ReadOnlySequence<byte> sequence, byte[] value)
    {
        if (sequence.Length != value.Length)
        {
            return false;
        }

        if (sequence.IsSingleSegment)
        {
            return sequence.FirstSpan.SequenceEqual(value);
        }

        Span<byte> tmp = stackalloc byte[255];
        sequence.CopyTo(tmp);
        return tmp[..value.Length].SequenceEqual(value);
    }
}
