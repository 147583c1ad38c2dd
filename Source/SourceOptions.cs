using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Transport;

namespace StreamClone.Source;

/// <summary>Tuning of the Source's dataflow graph; every bound is here with its reason.</summary>
public sealed record SourceOptions
{
    /// <summary>
    /// Bytes per chunk, the unit of identity (hash, zero mark, dedup, demand fetch). 4 KiB = one
    /// guest page: measured on a memory-like image, 4 KiB chunks expose zero and duplicate pages
    /// (wire 32% of the image) that 64 KiB chunks hide (41%).
    /// </summary>
    public int ChunkSize { get; init; } = ChunkMath.PageSize;

    /// <summary>
    /// Chunks per batch, the unit of compression and framing. zstd over 4 KiB runs at ~130 MB/s per
    /// core against ~340 MB/s over 64 KiB; 64 chunks (256 KiB at 4 KiB) leaves enough non-zero data
    /// per batch for zstd's speed even when half the pages are zero, and keeps a frame well under
    /// the transport's payload limit.
    /// </summary>
    public int BatchChunks { get; init; } = 64;

    /// <summary>
    /// zstd level; 0 = no compression, negative = zstd's fast levels. -1 by default: measured with
    /// ZstdSharp on 256 KiB memory-like batches here, level -1 compresses at ~380 MB/s per core to
    /// 38.4% against ~200 MB/s to 37.5% at level 1, and compression is the source's largest cost.
    /// </summary>
    public int CompressionLevel { get; init; } = -1;

    /// <summary>
    /// Where sessions rent raw batches and payloads: the process's bounded pool; a test gives a
    /// source a pool of its own to count its leases exactly.
    /// </summary>
    public BatchBufferPool Buffers { get; init; } = BatchBufferPool.Shared;

    /// <summary>Workers in each parallel stage (hash, compress).</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// Batches buffered per stage. Bounds memory (each batch holds at most BatchChunks*ChunkSize
    /// bytes raw plus as much compressed) and makes the reader wait when the network is slower:
    /// at 256 KiB batches, 4 per stage is ~1 MiB per stage, a few ms of work at full speed.
    /// </summary>
    public int StageCapacity { get; init; } = 4;

    /// <summary>
    /// Sessions streaming at once; a sink beyond this is refused with TooManySessions. Each holds
    /// its graph's buffers (~4 stages × StageCapacity batches of up to 2 × 256 KiB, a few MiB), its
    /// dedup set (~44 bytes per distinct chunk sent) and the sink's inventory; 64 keeps that under
    /// ~1 GiB for a few-GiB VM, and two cores cannot feed more sinks usefully (relays fan out beyond).
    /// </summary>
    public int MaxSessions { get; init; } = 64;

    /// <summary>
    /// Connections still in their handshake (no Hello yet, or offer sent and inventory not complete).
    /// Each may buffer up to <see cref="TransportOptions.ReceivePauseThreshold"/> (4 MiB) of unparsed
    /// bytes, so 64 bound that to 256 MiB. When a new connection goes over, the oldest pending one
    /// is dropped: a real sink completes its handshake in milliseconds, so a flood of silent
    /// connections evicts itself, not the sinks behind it.
    /// </summary>
    public int MaxPendingConnections { get; init; } = 64;

    /// <summary>
    /// Inventory hashes kept per session (the sink's store may list more; the rest are read and
    /// ignored: the inventory only saves bandwidth). 4 Mi hashes cover 16 GiB of distinct 4 KiB
    /// chunks and cost at most ~180 MiB per session (44 bytes per entry in a set grown with use).
    /// </summary>
    public int MaxInventoryHashes { get; init; } = 4 << 20;

    /// <summary>
    /// Mutual TLS on every connection (this node's certificate and its rule for its peers'): a peer without
    /// a certificate of ours gets no frame. Null = plain TCP, logged once as insecure.
    /// </summary>
    public TlsSettings? Tls { get; init; }

    public int BatchBytes => ChunkSize * BatchChunks;

    public void Validate()
    {
        ChunkMath.ValidateChunkSize(ChunkSize);
        if (BatchChunks is < 1 or > WireLimits.MaxBatchChunks)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchChunks), BatchChunks, $"Batch must hold 1 to {WireLimits.MaxBatchChunks} chunks.");
        }
        if ((long)BatchChunks * ChunkSize > WireLimits.MaxBatchRawBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchChunks), BatchChunks, $"A batch may span at most {WireLimits.MaxBatchRawBytes} bytes ({BatchChunks} chunks of {ChunkSize} bytes do not).");
        }
        if (CompressionLevel is < -7 or > 19)
        {
            throw new ArgumentOutOfRangeException(nameof(CompressionLevel), CompressionLevel, "zstd level must be -7 to 19 (0 = off).");
        }
        if (Parallelism < 1 || StageCapacity < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Parallelism), "Parallelism and stage capacity must be at least 1.");
        }
        if (MaxSessions < 1 || MaxPendingConnections < 1 || MaxInventoryHashes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxSessions), "Sessions and pending connections must be at least 1, inventory hashes at least 0.");
        }
    }
}
