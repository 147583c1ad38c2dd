using System.Runtime.CompilerServices;

namespace StreamClone.Shared.Buffers;

/// <summary>
/// One pooled, batch-sized array and the length in use: a raw batch and its compressed payload on
/// the source, a received payload and its decompressed data on the sink, chunk scratch in the store.
/// <para>
/// Ownership (Tmds.Ssh's Packet contract): whoever holds a BatchBuffer disposes it or hands it on,
/// exactly once. Each hand-off says so where it happens ("takes ownership"); a callee that must not
/// keep the bytes gets <see cref="Span"/> or <see cref="Memory"/>, never the BatchBuffer. Dispose
/// returns the array to its <see cref="BatchBufferPool"/>. A second Dispose throws in every build:
/// two owners of one lease would otherwise each believe the array is theirs to give back, and the
/// pool would hand one array to two renters. Touching the bytes after Dispose throws
/// <see cref="ObjectDisposedException"/> (the array reference is dropped at once).
/// </para>
/// <para>
/// Leaks: <see cref="BatchBufferPool.Outstanding"/> counts leases not yet disposed (every build), and
/// a graph's <see cref="BatchBufferScope"/> returns the ones Dataflow dropped when it faulted. DEBUG
/// builds also finalize each undisposed lease: <c>LeakCount</c> counts them and <c>LastLeak</c> names
/// the stack that rented the last one (Garnet's LimitedFixedBufferPool names its leakers the same way).
/// </para>
/// </summary>
public sealed class BatchBuffer : IDisposable
{
    private readonly BatchBufferPool _pool;
    private readonly BatchBufferScope? _scope;
    private readonly int _capacity;
    private byte[]? _array;
    private int _length;
    private int _disposed;

    internal BatchBuffer(BatchBufferPool pool, byte[] array, int length, BatchBufferScope? scope)
    {
        _pool = pool;
        _array = array;
        _capacity = length;
        _length = length;
        _scope = scope;
#if DEBUG
        _rentedAt = new System.Diagnostics.StackTrace(2, fNeedFileInfo: false).ToString();
#endif
    }

    /// <summary>Bytes in use: the length rented, or less after <see cref="SetLength"/>.</summary>
    public int Length => _length;

    /// <summary>The length rented (the array behind it may be longer: it is a pool size class).</summary>
    public int Capacity => _capacity;

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>Bytes [0, <see cref="Length"/>); valid until Dispose.</summary>
    public Span<byte> Span => Array.AsSpan(0, _length);

    /// <summary>Bytes [0, <see cref="Length"/>); valid until Dispose, so never kept by a callee.</summary>
    public Memory<byte> Memory => Array.AsMemory(0, _length);

    /// <summary>Bytes [0, <see cref="Capacity"/>), for a writer that learns its length afterwards (then <see cref="SetLength"/>).</summary>
    public Span<byte> WholeSpan => Array.AsSpan(0, _capacity);

    private byte[] Array => _array ?? ThrowDisposed();

    /// <summary>Marks how many bytes a writer filled (a compressed payload is shorter than its bound).</summary>
    public void SetLength(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, _capacity);
        _ = Array;
        _length = length;
    }

    /// <summary>Returns the array to its pool. Exactly once: a second call throws (see the type's ownership rule).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            ThrowDisposedTwice();
        }
        var array = _array!;
        _array = null;
        _scope?.Forget(this);
        _pool.Return(array);
#if DEBUG
        GC.SuppressFinalize(this);
#endif
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static byte[] ThrowDisposed() =>
        throw new ObjectDisposedException(nameof(BatchBuffer), "this batch buffer was returned to its pool; its bytes belong to another renter now");

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowDisposedTwice() =>
        throw new InvalidOperationException("batch buffer disposed twice: two holders believed they owned it (see BatchBuffer's ownership rule)");

#if DEBUG
    private static long s_leakCount;
    private static string? s_lastLeak;
    private readonly string _rentedAt;

    /// <summary>DEBUG only: leases the finalizer found undisposed since the process started.</summary>
    public static long LeakCount => Interlocked.Read(ref s_leakCount);

    /// <summary>DEBUG only: where the last leaked lease was rented.</summary>
    public static string? LastLeak => Volatile.Read(ref s_lastLeak);

    ~BatchBuffer()
    {
        // Not an assert: Debug.Assert fails fast on .NET, and a finalizer thread is the wrong place to
        // end a test run; the count is what tests and the DEBUG harness check.
        Interlocked.Increment(ref s_leakCount);
        Volatile.Write(ref s_lastLeak, _rentedAt);
    }
#endif
}
