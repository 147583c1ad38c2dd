namespace StreamClone.Store;

/// <summary>
/// Per-object chunk state in three bitmaps (3 bits a chunk: 384 KiB for a 4 GiB object at 4 KiB chunks).
/// Claimed: a Put owns the place (set once, first writer wins; cleared again only if its write failed).
/// Present: the bytes are readable. Zero: the place is a zero chunk (a hole). Present implies Claimed,
/// and Zero is set before Present so a reader that sees Present also sees Zero.
/// All updates are Interlocked, so Puts of different chunks never take a lock.
/// </summary>
/// <remarks>
/// The bits live in segments of <see cref="SegmentChunks"/> chunks, each allocated when its first
/// chunk is claimed: an offer's size is a peer's claim, so memory follows the chunks that arrive
/// (a claimed 1 TiB object costs its 16 KiB segment table until data comes), never the claim.
/// </remarks>
internal sealed class PresenceMap
{
    /// <summary>
    /// 2^17 chunks a segment (512 MiB at 4 KiB chunks): 48 KiB of bits, small next to the data that
    /// fills it and under the 85,000-byte large-object-heap threshold.
    /// </summary>
    private const int SegmentShift = 17;
    private const long SegmentChunks = 1L << SegmentShift;
    private const int SegmentWords = (int)(SegmentChunks / 64);

    // Word layout of a segment: [0, W) claimed, [W, 2W) present, [2W, 3W) zero.
    private const int ClaimedAt = 0;
    private const int PresentAt = SegmentWords;
    private const int ZeroAt = 2 * SegmentWords;

    private readonly ulong[]?[] _segments;

    public PresenceMap(long chunkCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(chunkCount);
        // At most 2^32 chunks an object (WireLimits.MaxChunksPerObject): 2^15 segment slots, 256 KiB.
        _segments = new ulong[]?[checked((int)((chunkCount + SegmentChunks - 1) >> SegmentShift))];
    }

    public bool IsPresent(long index) => Test(PresentAt, index);

    public bool IsZero(long index) => Test(ZeroAt, index);

    public bool IsClaimed(long index) => Test(ClaimedAt, index);

    /// <summary>True when this caller now owns the place; false when another Put got it first.</summary>
    public bool TryClaim(long index)
    {
        var bit = Bit(index);
        return (Interlocked.Or(ref Word(Segment(index), ClaimedAt, index), bit) & bit) == 0;
    }

    public void Release(long index) => Interlocked.And(ref Word(Segment(index), ClaimedAt, index), ~Bit(index));

    public void MarkPresent(long index, bool zero)
    {
        var segment = Segment(index);
        if (zero)
        {
            Interlocked.Or(ref Word(segment, ZeroAt, index), Bit(index));
        }
        Interlocked.Or(ref Word(segment, PresentAt, index), Bit(index));
    }

    /// <summary>
    /// Takes a present place back to absent (its bytes failed their hash on read): clears present and
    /// zero, leaving the claim for the caller to release once counters and index are fixed, so a Put
    /// waits (Claim spins on claimed-not-present) instead of racing the fix. False when another
    /// caller took it back first (or it was not present): exactly one caller does the bookkeeping.
    /// </summary>
    public bool TryUnmarkPresent(long index, out bool wasZero)
    {
        var segment = Segment(index);
        var bit = Bit(index);
        wasZero = false;
        if ((Interlocked.And(ref Word(segment, PresentAt, index), ~bit) & bit) == 0)
        {
            return false;
        }
        wasZero = (Interlocked.And(ref Word(segment, ZeroAt, index), ~bit) & bit) != 0;
        return true;
    }

    /// <summary>True when every chunk in [first, last] is present.</summary>
    public bool AllPresent(long first, long last)
    {
        for (var i = first; i <= last; i++)
        {
            // Whole words at a time once aligned: NBD reads span many chunks.
            if ((i & 63) == 0 && last - i >= 63)
            {
                var segment = Volatile.Read(ref _segments[i >> SegmentShift]);
                if (segment is null || Volatile.Read(ref Word(segment, PresentAt, i)) != ulong.MaxValue)
                {
                    return false;
                }
                i += 63;
                continue;
            }
            if (!IsPresent(i))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The segment holding <paramref name="index"/>, allocated by whichever writer comes first.</summary>
    private ulong[] Segment(long index)
    {
        ref var slot = ref _segments[index >> SegmentShift];
        var segment = Volatile.Read(ref slot);
        if (segment is null)
        {
            var fresh = new ulong[3 * SegmentWords];
            segment = Interlocked.CompareExchange(ref slot, fresh, null) ?? fresh;
        }
        return segment;
    }

    private static ref ulong Word(ulong[] segment, int at, long index) =>
        ref segment[at + (int)((index & (SegmentChunks - 1)) >> 6)];

    private static ulong Bit(long index) => 1UL << (int)(index & 63);

    private bool Test(int at, long index)
    {
        var segment = Volatile.Read(ref _segments[index >> SegmentShift]);
        return segment is not null && (Volatile.Read(ref Word(segment, at, index)) & Bit(index)) != 0;
    }
}
