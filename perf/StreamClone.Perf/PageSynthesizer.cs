using System.Buffers.Binary;

namespace StreamClone.Perf;

/// <summary>
/// Writes one 4 KiB page of a given kind. Text and code pages are 4 KiB windows at random offsets
/// into pools built once per seed, then stamped with a few random fields; that costs one memcpy per
/// page instead of synthesising every byte, which is what keeps the generator near memory speed.
/// The pools are 2 MiB: four times zstd -1's 512 KiB window (windowLog 19), so a window rarely
/// holds two overlapping slices and cross-page matches stay as rare as in a real image. The
/// stamps make every page unique, so dedup sees only the intended <see cref="PageKind.Duplicate"/>
/// pages. Not thread-safe: one instance per generator or mutator.
/// </summary>
internal sealed partial class PageSynthesizer
{
    public const int PageSize = 4096;
    private const int PoolSize = 2 << 20;

    private readonly byte[] _textPool;
    private readonly byte[] _codePool;
    private Xoshiro256 _rng;

    public PageSynthesizer(int seed)
    {
        // Separate streams for pools and pages so pool construction does not shift page contents.
        var poolRng = new Xoshiro256(unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + 1));
        _textPool = TextPool.Build(ref poolRng, PoolSize);
        _codePool = CodePool.Build(ref poolRng, PoolSize);
        _rng = new Xoshiro256(unchecked((ulong)(uint)seed));
    }

    public ref Xoshiro256 Rng => ref _rng;

    public void Write(PageKind kind, Span<byte> page)
    {
        switch (kind)
        {
            case PageKind.Zero:
                page.Clear();
                break;
            case PageKind.Text:
                WriteText(page);
                break;
            case PageKind.Code:
                WriteCode(page);
                break;
            case PageKind.Structured:
                WriteStructured(page);
                break;
            case PageKind.Random:
                _rng.Fill(page);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "duplicates are copied by the caller");
        }
    }

    private void WriteText(Span<byte> page)
    {
        _textPool.AsSpan(_rng.Next(PoolSize - PageSize), PageSize).CopyTo(page);
        // Six 8-digit stamps (ids, timestamps): unique page, ~27 bits of entropy each.
        for (var i = 0; i < 6; i++)
        {
            var at = _rng.Next(PageSize - 8);
            var value = _rng.NextUInt64();
            for (var d = 0; d < 8; d++)
            {
                page[at + d] = (byte)('0' + (int)(value % 10));
                value /= 10;
            }
        }
    }

    private void WriteCode(Span<byte> page)
    {
        _codePool.AsSpan(_rng.Next(PoolSize - PageSize), PageSize).CopyTo(page);
        // Four relocated rel32 / address fields.
        for (var i = 0; i < 4; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(page[_rng.Next(PageSize - 4)..], (uint)_rng.NextUInt64());
        }
    }

    /// <summary>
    /// An array of records with one schema per page (what a heap page or an inode table holds):
    /// 8-byte fields that are pointers into one of two regions, small counters, flags, zero
    /// padding or random 32-bit values.
    /// </summary>
    private void WriteStructured(Span<byte> page)
    {
        Span<byte> schema = stackalloc byte[8];
        var fields = 2 + _rng.Next(7); // records of 16..64 bytes
        var padding = 0;
        for (var f = 0; f < fields; f++)
        {
            schema[f] = (byte)_rng.Next(6);
            padding += schema[f] == 4 ? 1 : 0;
        }
        if (padding == fields)
        {
            // An all-padding schema would make a zero page under the wrong kind (and break the
            // generator's zero and duplicate counts); the first field becomes a pointer.
            schema[0] = 0;
        }
        // User-space heap (0x0000_55xx_...) and mmap (0x0000_7fxx_...) regions, 4 KiB aligned.
        var heapBase = 0x0000_5500_0000_0000UL | ((_rng.NextUInt64() & 0xFF_FFFF_F000UL));
        var mmapBase = 0x0000_7F00_0000_0000UL | ((_rng.NextUInt64() & 0xFF_FFFF_F000UL));
        var counter = (ulong)_rng.Next(1 << 16);
        var slots = PageSize / 8;
        for (var slot = 0; slot < slots; slot++)
        {
            var bits = _rng.NextUInt64();
            ulong value = schema[slot % fields] switch
            {
                // Pointer: base + 16-byte-aligned offset below 1 MiB.
                0 => heapBase + ((bits & 0xF_FFF0UL)),
                1 => mmapBase + ((bits & 0xF_FFF0UL)),
                2 => bits & 0x3FF, // small int (length, refcount)
                3 => counter += 1 + (bits & 3), // ascending id
                4 => 0, // padding / NULL
                _ => (bits & 0xFFFF_FFFF) & ((bits >> 32) | 0xFFFF_0000), // flags-ish 32-bit
            };
            BinaryPrimitives.WriteUInt64LittleEndian(page[(slot * 8)..], value);
        }
    }
}
