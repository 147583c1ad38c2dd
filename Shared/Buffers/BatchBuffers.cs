using System.Buffers;

namespace StreamClone.Shared.Buffers;

/// <summary>
/// The pool for batch-sized buffers (raw batches, compressed payloads, decompressed data: 4 KiB to
/// 8 MiB). Not ArrayPool.Shared: its per-thread and per-core caches keep only a few arrays per size,
/// and batch buffers are rented on one thread (socket loop, reader) and returned on another (a
/// bulk worker), so arrays overflow those caches, are dropped, and are allocated again on the large
/// object heap; that garbage is only reclaimed by blocking gen2 collections, which showed as sink
/// RSS growing with the image and as tens of ms at the tail of demand latency. This pool is one
/// shared, locked set of buckets with a fixed depth, so a buffer returned anywhere is reused anywhere.
/// </summary>
public static class BatchBuffers
{
    /// <summary>Largest pooled array: a frame payload's limit (TransportOptions.MaxPayloadBytes).</summary>
    public const int MaxPooledLength = 8 << 20;

    /// <summary>
    /// Arrays kept per power-of-two size. The graphs hold at most a few dozen batches in flight
    /// (stage capacities × parallelism), so 64 per size covers them; more are simply not kept.
    /// </summary>
    public const int ArraysPerSize = 64;

    public static ArrayPool<byte> Pool { get; } = ArrayPool<byte>.Create(MaxPooledLength, ArraysPerSize);
}
