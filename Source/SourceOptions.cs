using StreamClone.Shared;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;

namespace StreamClone.Source;

/// <summary>Tuning of the Source's dataflow graph; every bound is here with its reason (what any serving node bounds is in <see cref="DownstreamOptions"/>).</summary>
public sealed record SourceOptions : DownstreamOptions
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

    /// <summary>Workers in each parallel stage (hash, compress).</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// Batches buffered per stage. Bounds memory (each batch holds at most BatchChunks*ChunkSize
    /// bytes raw plus as much compressed) and makes the reader wait when the network is slower:
    /// at 256 KiB batches, 4 per stage is ~1 MiB per stage, a few ms of work at full speed.
    /// </summary>
    public int StageCapacity { get; init; } = 4;

    public int BatchBytes => ChunkSize * BatchChunks;

    public override void Validate()
    {
        base.Validate();
        ChunkMath.ValidateChunkSize(ChunkSize);
        if (BatchChunks is < 1 or > WireLimits.MaxBatchChunks)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchChunks), BatchChunks, $"Batch must hold 1 to {WireLimits.MaxBatchChunks} chunks.");
        }
        if ((long)BatchChunks * ChunkSize > WireLimits.MaxBatchRawBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchChunks), BatchChunks, $"A batch may span at most {WireLimits.MaxBatchRawBytes} bytes ({BatchChunks} chunks of {ChunkSize} bytes do not).");
        }
        if (Parallelism < 1 || StageCapacity < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Parallelism), "Parallelism and stage capacity must be at least 1.");
        }
    }
}
