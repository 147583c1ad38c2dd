namespace StreamClone.Sink.Store;

/// <summary>
/// Per-object chunk state in three bitmaps (3 bits a chunk: 384 KiB for a 4 GiB object at 4 KiB chunks).
/// Claimed: a Put owns the place (set once, first writer wins; cleared again only if its write failed).
/// Present: the bytes are readable. Zero: the place is a zero chunk (a hole). Present implies Claimed,
/// and Zero is set before Present so a reader that sees Present also sees Zero.
/// All updates are Interlocked, so Puts of different chunks never take a lock.
/// </summary>
internal sealed class PresenceMap
{
    private readonly ulong[] _claimed;
    private readonly ulong[] _present;
    private readonly ulong[] _zero;

    public PresenceMap(long chunkCount)
    {
        var words = checked((int)((chunkCount + 63) / 64));
        _claimed = new ulong[words];
        _present = new ulong[words];
        _zero = new ulong[words];
    }

    public bool IsPresent(long index) => Test(_present, index);

    public bool IsZero(long index) => Test(_zero, index);

    public bool IsClaimed(long index) => Test(_claimed, index);

    /// <summary>True when this caller now owns the place; false when another Put got it first.</summary>
    public bool TryClaim(long index)
    {
        var bit = Bit(index);
        return (Interlocked.Or(ref _claimed[index >> 6], bit) & bit) == 0;
    }

    public void Release(long index) => Interlocked.And(ref _claimed[index >> 6], ~Bit(index));

    public void MarkPresent(long index, bool zero)
    {
        if (zero)
        {
            Interlocked.Or(ref _zero[index >> 6], Bit(index));
        }
        Interlocked.Or(ref _present[index >> 6], Bit(index));
    }

    /// <summary>True when every chunk in [first, last] is present.</summary>
    public bool AllPresent(long first, long last)
    {
        for (var i = first; i <= last; i++)
        {
            // Whole words at a time once aligned: NBD reads span many chunks.
            if ((i & 63) == 0 && last - i >= 63)
            {
                if (Volatile.Read(ref _present[i >> 6]) != ulong.MaxValue)
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

    private static ulong Bit(long index) => 1UL << (int)(index & 63);

    private static bool Test(ulong[] words, long index) => (Volatile.Read(ref words[index >> 6]) & Bit(index)) != 0;
}
