using System.Threading.Tasks.Dataflow;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Threading;
using StreamClone.Source.Inputs;

namespace StreamClone.Source.Pipeline;

/// <summary>
/// The bulk pass of one snapshot, as a dataflow graph, run once per snapshot whatever the number of sinks
/// (the source appends its output to an EncodedStream that every session reads):
/// <code>
/// read (1, in order) → classify: zero test + BLAKE3 (N parallel, order kept)
///   → dedup + root hashes (1, in order) → encode: zstd over the Data runs (N parallel, order kept)
///   → output buffer → the session's sender loop
/// </code>
/// Every block is bounded (<see cref="SourceOptions.StageCapacity"/>), so when the consumer is slow
/// it stops taking, the buffers fill, and the reader's SendAsync waits: backpressure reaches the disk. Dedup is a single in-order stage so "first occurrence" is the one that is
/// sent as data, and it reaches the wire before every Known entry that refers to it.
/// <para>
/// Buffers: each batch's raw buffer and payload are rented from <see cref="Buffers"/>. A block that
/// faults or is cancelled drops what it holds, so the graph's owner calls
/// <see cref="BatchBufferScope.ReturnAbandoned"/> once <see cref="RunAsync"/> and its consumer of
/// <see cref="Output"/> have both finished (RunAsync returns only after every block has stopped).
/// </para>
/// </summary>
internal sealed class SourcePipeline
{
    private readonly ISnapshotInput _input;
    private readonly SourceOptions _options;
    // Grows with the distinct chunks actually sent, not the snapshot's size (see ChunkHashSet).
    private readonly ChunkHashSet _sentThisStream = new();
    private readonly Blake3.Hasher[] _rootHashers;

    private long _batchesEncoded;

    public SourcePipeline(ISnapshotInput input, SourceOptions options, BatchBufferScope buffers)
    {
        Buffers = buffers;
        _input = input;
        _options = options;
        _rootHashers = [.. input.Offer.Objects.Select(_ => Blake3.Hasher.New())];
    }

    /// <summary>Batches classified and encoded so far (each batch of the snapshot once: the proof of encode-once).</summary>
    public long BatchesEncoded => Interlocked.Read(ref _batchesEncoded);

    /// <summary>Where every batch buffer of this pass is rented.</summary>
    public BatchBufferScope Buffers { get; }

    /// <summary>Encoded batches in object/index order, each owning its payload (the consumer disposes it); complete when the pass ends (faulted if it failed).</summary>
    public BufferBlock<EncodedBatch> Output { get; } = new(new DataflowBlockOptions { BoundedCapacity = 4 });

    /// <summary>Per object, BLAKE3 over its chunk-hash list; valid after <see cref="RunAsync"/> completes.</summary>
    public List<byte[]> RootHashes { get; } = [];

    public async Task RunAsync(CancellationToken ct)
    {
        var parallel = new ExecutionDataflowBlockOptions
        {
            BoundedCapacity = _options.StageCapacity * _options.Parallelism,
            MaxDegreeOfParallelism = _options.Parallelism,
            EnsureOrdered = true,
            CancellationToken = ct,
            TaskScheduler = BackgroundPriorityScheduler.Bulk,
        };
        var serial = new ExecutionDataflowBlockOptions
        {
            BoundedCapacity = _options.StageCapacity,
            EnsureOrdered = true,
            CancellationToken = ct,
            TaskScheduler = BackgroundPriorityScheduler.Bulk,
        };
        var link = new DataflowLinkOptions { PropagateCompletion = true };

        var classify = new TransformBlock<WorkBatch, WorkBatch>(BatchEncoder.Classify, parallel);
        var dedup = new TransformBlock<WorkBatch, WorkBatch>(Dedup, serial);
        var level = _options.CompressionLevel;
        var encode = new TransformBlock<WorkBatch, EncodedBatch>(b =>
        {
            var encoded = BatchEncoder.Encode(b, level, Buffers);
            Interlocked.Increment(ref _batchesEncoded);
            return encoded;
        }, parallel);
        classify.LinkTo(dedup, link);
        dedup.LinkTo(encode, link);
        encode.LinkTo(Output, link);

        try
        {
            foreach (var obj in _input.Offer.Objects)
            {
                var chunks = ChunkMath.ChunkCount(obj.Size, obj.ChunkSize);
                for (long first = 0; first < chunks; first += _options.BatchChunks)
                {
                    var count = (int)Math.Min(_options.BatchChunks, chunks - first);
                    var batch = await InputBatchReader.ReadAsync(_input, obj, first, count, requestId: 0, Buffers, ct);
                    var accepted = false;
                    try
                    {
                        // True hands the batch (and its buffer) to the graph; false or a cancellation leaves it ours.
                        accepted = await classify.SendAsync(batch, ct);
                    }
                    finally
                    {
                        if (!accepted)
                        {
                            batch.Raw.Dispose();
                        }
                    }
                    if (!accepted)
                    {
                        // The graph faulted downstream; its completion carries the cause.
                        break;
                    }
                }
            }
            classify.Complete();
            await encode.Completion;
        }
        catch (Exception ex)
        {
            // Also when encode faulted: fault propagates only downstream, so classify and dedup would
            // keep running. Return only once no stage runs any more: a worker still holding a batch
            // would otherwise have its lease disposed under it by the owner's ReturnAbandoned.
            ((IDataflowBlock)classify).Fault(ex);
            await Task.WhenAll(classify.Completion, dedup.Completion, encode.Completion).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw;
        }
        foreach (var hasher in _rootHashers)
        {
            RootHashes.Add(hasher.Finalize().AsSpan().ToArray());
            hasher.Dispose();
        }
    }

    private WorkBatch Dedup(WorkBatch batch)
    {
        Span<byte> hashBytes = stackalloc byte[ChunkHash.Size];
        ref var root = ref _rootHashers[batch.ObjectId];
        for (var i = 0; i < batch.Count; i++)
        {
            var hash = batch.Hashes[i];
            hash.Write(hashBytes);
            root.Update(hashBytes);
            if (batch.Kinds[i] != ChunkEntryKind.Data)
            {
                continue;
            }
            // Known in the stream means "sent as Data earlier in this stream", for every reader. What a
            // reader holds already is its session's business (BatchFilter), not the stream's.
            if (!_sentThisStream.Add(hash))
            {
                batch.Kinds[i] = ChunkEntryKind.Known;
            }
        }
        return batch;
    }
}
