using System.Numerics;

namespace StreamClone.Shared.Buffers;

/// <summary>Where a stage rents its batch buffers: the pool itself, or a graph's <see cref="BatchBufferScope"/>.</summary>
public interface IBatchBufferSource
{
    /// <summary>A lease of exactly <paramref name="length"/> bytes; the caller owns it (see <see cref="BatchBuffer"/>).</summary>
    BatchBuffer Rent(int length);
}

/// <summary>
/// The bounded pool behind every <see cref="BatchBuffer"/>: power-of-two size classes from
/// <see cref="MinPooledLength"/> to <see cref="MaxPooledLength"/>, each keeping at most a fixed
/// number of arrays (Garnet's LimitedFixedBufferPool levels). A rent that finds its class empty, or
/// asks for more than the largest class, allocates and counts a <see cref="Misses">miss</see>; a
/// return to a full class drops the array for the GC. So what the pool keeps is bounded by its
/// constructor's numbers whatever a peer makes us rent, and what is rented at once is bounded by the
/// graphs (stage capacities), not by the pool.
/// <para>
/// Not ArrayPool.Shared: its per-thread and per-core caches keep only a few arrays per size, and
/// batch buffers are rented on one thread (socket loop, reader) and returned on another (a bulk
/// worker), so arrays overflowed those caches, were dropped and allocated again on the large object
/// heap; that garbage is only reclaimed by blocking gen2 collections, which showed as sink RSS growing
/// with the image and as tens of ms at the tail of demand latency. Here one locked stack per size
/// class is shared by every thread, so a buffer returned anywhere is reused anywhere.
/// </para>
/// <para>
/// Arrays are not cleared on return: every renter writes the bytes it then reads (a read, a
/// decompression, a copy), and clearing 256 KiB per batch would cost more CPU than the copies this
/// type exists to remove. The process holds the same VM data in its inputs anyway.
/// </para>
/// </summary>
public sealed class BatchBufferPool : IBatchBufferSource
{
    /// <summary>Smallest class: one 4 KiB page chunk (the store's scratch); shorter rents round up to it.</summary>
    public const int MinPooledLength = 4 << 10;

    /// <summary>Largest class: a frame payload's default limit (TransportOptions.MaxPayloadBytes). Larger rents are unpooled misses.</summary>
    public const int MaxPooledLength = 8 << 20;

    /// <summary>
    /// Arrays kept per size class. A graph holds at most a few dozen batches in flight (stage
    /// capacities × parallelism: ~30 raw batches and ~30 payloads at the source's defaults), so 64
    /// per size covers a couple of sessions without a miss.
    /// </summary>
    public const int DefaultArraysPerSize = 64;

    /// <summary>
    /// Bytes kept per size class, which caps the large classes below <see cref="DefaultArraysPerSize"/>
    /// (8 MiB: 4 arrays). All twelve classes full keep at most 64 × (4 KiB … 512 KiB) + 32 MiB × 4 ≈
    /// 192 MiB, and only after graphs really had that many in flight; a hostile peer sending 8 MiB
    /// payloads leaves at most 32 MiB behind.
    /// </summary>
    public const long DefaultRetainedBytesPerSize = 32L << 20;

    private static readonly int MinShift = BitOperations.Log2(MinPooledLength);

    private readonly SizeClass[] _classes;
    private long _rented;
    private long _misses;
    private long _outstanding;

    public BatchBufferPool(int arraysPerSize = DefaultArraysPerSize, long retainedBytesPerSize = DefaultRetainedBytesPerSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(arraysPerSize);
        ArgumentOutOfRangeException.ThrowIfNegative(retainedBytesPerSize);
        var classes = BitOperations.Log2(MaxPooledLength) - MinShift + 1;
        _classes = new SizeClass[classes];
        for (var i = 0; i < classes; i++)
        {
            var size = MinPooledLength << i;
            _classes[i] = new SizeClass(size, (int)Math.Min(arraysPerSize, retainedBytesPerSize / size));
        }
    }

    /// <summary>The process's pool: every session and the store rent from it.</summary>
    public static BatchBufferPool Shared { get; } = new();

    /// <summary>Leases handed out since the pool was made.</summary>
    public long Rented => Interlocked.Read(ref _rented);

    /// <summary>Rents that allocated: the size class was empty (warm-up, or more in flight than it keeps) or the length is over <see cref="MaxPooledLength"/>.</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Leases not yet disposed. Returns to its earlier value once every holder has finished; a leak keeps it up.</summary>
    public long Outstanding => Interlocked.Read(ref _outstanding);

    /// <summary>Arrays the pool holds right now, over all size classes (bounded by the constructor's numbers).</summary>
    public int Retained => _classes.Sum(c => c.Count);

    /// <summary>How many arrays of <paramref name="length"/>'s size class the pool keeps at most (0: not pooled).</summary>
    public int CapacityFor(int length) => ClassOf(length) is { } c ? c.Capacity : 0;

    public BatchBuffer Rent(int length) => Rent(length, scope: null);

    internal BatchBuffer Rent(int length, BatchBufferScope? scope)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        byte[] array;
        if (length == 0)
        {
            array = [];
        }
        else if (ClassOf(length) is { } sizeClass)
        {
            if (!sizeClass.TryPop(out array))
            {
                Interlocked.Increment(ref _misses);
                array = GC.AllocateUninitializedArray<byte>(sizeClass.Size);
            }
        }
        else
        {
            Interlocked.Increment(ref _misses);
            array = GC.AllocateUninitializedArray<byte>(length);
        }
        Interlocked.Increment(ref _rented);
        Interlocked.Increment(ref _outstanding);
        return new BatchBuffer(this, array, length, scope);
    }

    /// <summary>Called once per lease, by <see cref="BatchBuffer.Dispose"/> only.</summary>
    internal void Return(byte[] array)
    {
        Interlocked.Decrement(ref _outstanding);
        // An array of another length (empty, or an unpooled large one) was never a class's.
        if (array.Length > 0 && ClassOf(array.Length) is { } sizeClass && sizeClass.Size == array.Length)
        {
            sizeClass.TryPush(array);
        }
    }

    private SizeClass? ClassOf(int length)
    {
        if (length > MaxPooledLength)
        {
            return null;
        }
        var rounded = BitOperations.RoundUpToPowerOf2((uint)Math.Max(length, MinPooledLength));
        return _classes[BitOperations.Log2(rounded) - MinShift];
    }

    /// <summary>One size: a locked stack of at most <see cref="Capacity"/> arrays.</summary>
    private sealed class SizeClass(int size, int capacity)
    {
        private readonly Lock _lock = new();
        private readonly byte[][] _arrays = new byte[capacity][];
        private int _count;

        public int Size { get; } = size;

        public int Capacity { get; } = capacity;

        public int Count => Volatile.Read(ref _count);

        public bool TryPop(out byte[] array)
        {
            lock (_lock)
            {
                if (_count > 0)
                {
                    array = _arrays[--_count];
                    _arrays[_count] = null!;
                    return true;
                }
            }
            array = null!;
            return false;
        }

        public void TryPush(byte[] array)
        {
            lock (_lock)
            {
                if (_count < _arrays.Length)
                {
                    _arrays[_count++] = array;
                }
            }
        }
    }
}
