namespace StreamClone.Shared.Multicast;

/// <summary>
/// The sender's NACK aggregation (NORM, RFC 5740 §5.4): the first NACK opens a window of GRTT·(K+1); NACKs from every
/// receiver in that window are merged (bitwise OR per batch), and when it closes each requested fragment is repaired once,
/// however many receivers asked. For one GRTT after a repair, NACKs for the fragments just repaired are ignored: they were
/// sent before the repair could arrive. Pending fragments are bounded (<see cref="MaxPendingBatches"/> batches); beyond
/// that a NACK waits for the receiver's next round. Times in µs. Not thread-safe (the sender calls it under its lock).
/// </summary>
public sealed class RepairAggregator
{
    /// <summary>Batches with pending repairs: a report holds at most <see cref="WireLimits.MaxMulticastNacks"/>, so this is
    /// several receivers' worth of distinct losses in one window, and bounds the bitmaps held (≤ 400 bytes each).</summary>
    public const int MaxPendingBatches = 1024;

    private readonly SortedDictionary<long, byte[]?> _pending = [];
    private readonly Dictionary<long, byte[]?> _justRepaired = [];
    private long _deadline = long.MaxValue;
    private long _holdUntil = long.MinValue;

    /// <summary>When the open window closes (long.MaxValue when none is open).</summary>
    public long Deadline => _deadline;

    public bool HasPending => _pending.Count > 0;

    /// <summary>
    /// Adds one receiver's NACK for batch <paramref name="sequence"/>: <paramref name="missing"/> is a fragment bitmap
    /// (LSB first), empty for the whole batch. The caller checked the sequence exists.
    /// </summary>
    public void Add(long sequence, ReadOnlySpan<byte> missing, long now, long windowMicroseconds)
    {
        if (now < _holdUntil && _justRepaired.TryGetValue(sequence, out var repaired))
        {
            if (repaired is null)
            {
                return;
            }
            if (!missing.IsEmpty)
            {
                var left = missing.ToArray();
                for (var i = 0; i < Math.Min(left.Length, repaired.Length); i++)
                {
                    left[i] &= (byte)~repaired[i];
                }
                if (left.AsSpan().IndexOfAnyExcept((byte)0) < 0)
                {
                    return;
                }
                missing = left;
            }
        }
        else if (missing.IndexOfAnyExcept((byte)0) < 0 && !missing.IsEmpty)
        {
            return;
        }
        if (_pending.TryGetValue(sequence, out var held))
        {
            _pending[sequence] = Merge(held, missing);
        }
        else
        {
            if (_pending.Count >= MaxPendingBatches)
            {
                return;
            }
            _pending[sequence] = missing.IsEmpty ? null : missing.ToArray();
        }
        if (_deadline == long.MaxValue)
        {
            _deadline = now + windowMicroseconds;
        }
    }

    /// <summary>
    /// When the window has closed: moves every pending (sequence, bitmap or null = whole batch) into <paramref name="due"/>
    /// in sequence order, remembers them for the hold-off of <paramref name="grttMicroseconds"/>, and returns true.
    /// </summary>
    public bool TryTakeDue(long now, long grttMicroseconds, List<(long Sequence, byte[]? Missing)> due)
    {
        if (now < _deadline || _pending.Count == 0)
        {
            return false;
        }
        _justRepaired.Clear();
        foreach (var (sequence, missing) in _pending)
        {
            due.Add((sequence, missing));
            _justRepaired[sequence] = missing;
        }
        _pending.Clear();
        _deadline = long.MaxValue;
        _holdUntil = now + grttMicroseconds;
        return true;
    }

    private static byte[]? Merge(byte[]? held, ReadOnlySpan<byte> missing)
    {
        if (held is null || missing.IsEmpty)
        {
            return null;
        }
        var merged = held.Length >= missing.Length ? held : [.. held, .. new byte[missing.Length - held.Length]];
        for (var i = 0; i < missing.Length; i++)
        {
            merged[i] |= missing[i];
        }
        return merged;
    }
}
