using System.Threading.Tasks.Dataflow;
using StreamClone.Perf;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Pipeline;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Unit.Buffers;

/// <summary>
/// A faulted or cancelled stage must not leak: once the graph and its consumer have stopped and the
/// owner has called ReturnAbandoned, every lease is back (the pool's Outstanding is 0). Each test
/// has a pool of its own, so the count is exact.
/// </summary>
public class FaultedGraphBufferTests
{
    private const int Page = 4096;
    private const int BatchChunks = 64;

    private static readonly SourceOptions Options = new() { BatchChunks = BatchChunks, StageCapacity = 2, Parallelism = 2, CompressionLevel = 1 };

    [Fact]
    public async Task A_read_failure_while_the_consumer_keeps_up_returns_every_buffer()
    {
        var pool = new BatchBufferPool();
        var input = new ScriptedInput(batches: 40, failAtBatch: 25);
        var pipeline = new SourcePipeline(input, Options, new BatchBufferScope(pool));
        var ct = TestContext.Current.CancellationToken;

        var consumed = ConsumeAsync(pipeline.Output, ct);
        var error = await Assert.ThrowsAsync<IOException>(() => pipeline.RunAsync(ct));
        Assert.Contains("batch 25", error.Message);
        await Assert.ThrowsAnyAsync<Exception>(() => consumed);

        Drain(pipeline.Output);
        pipeline.Buffers.ReturnAbandoned();
        Assert.Equal(0, pool.Outstanding);
        Assert.True(pool.Rented > 25, $"only {pool.Rented} leases: the pass did not get going");
    }

    [Fact]
    public async Task A_read_failure_while_every_stage_holds_batches_returns_what_the_blocks_dropped()
    {
        var pool = new BatchBufferPool();
        // Nobody reads the output: the 6 batches read before the failure sit in the stages (Output keeps 4 at most).
        var input = new ScriptedInput(batches: 40, failAtBatch: 6);
        var pipeline = new SourcePipeline(input, Options, new BatchBufferScope(pool));

        await Assert.ThrowsAsync<IOException>(() => pipeline.RunAsync(TestContext.Current.CancellationToken));
        Assert.True(pool.Outstanding > 0);

        Drain(pipeline.Output);
        var abandoned = pipeline.Buffers.ReturnAbandoned();
        Assert.True(abandoned > 0, "the faulted blocks dropped nothing: the test did not reach the case it is for");
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public async Task A_cancelled_pass_returns_every_buffer()
    {
        var pool = new BatchBufferPool();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        // Cancelled from inside the 10th read: the graph holds batches in every stage by then.
        var input = new ScriptedInput(batches: 40, failAtBatch: -1) { OnRead = batch => { if (batch == 10) { stop.Cancel(); } } };
        var pipeline = new SourcePipeline(input, Options, new BatchBufferScope(pool));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pipeline.RunAsync(stop.Token));

        Drain(pipeline.Output);
        pipeline.Buffers.ReturnAbandoned();
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public async Task A_pass_that_completes_leaves_nothing_for_the_scope()
    {
        var pool = new BatchBufferPool();
        var input = new ScriptedInput(batches: 12, failAtBatch: -1);
        var pipeline = new SourcePipeline(input, Options, new BatchBufferScope(pool));
        var ct = TestContext.Current.CancellationToken;

        var consumed = ConsumeAsync(pipeline.Output, ct);
        await pipeline.RunAsync(ct);
        Assert.Equal(12, await consumed);
        Assert.Equal(0, pipeline.Buffers.ReturnAbandoned());
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void A_batch_the_verifier_refuses_gives_back_its_payload_and_its_data()
    {
        var pool = new BatchBufferPool();
        var obj = new ObjectInfo { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = 4 * Page, ChunkSize = Page };
        var data = new byte[4 * Page];
        MemoryImageSample.FillDataPages(data, seed: 3);
        var hashes = new byte[4 * ChunkHash.Size];
        for (var i = 0; i < 4; i++)
        {
            ChunkHash.Compute(data.AsSpan(i * Page, Page)).Write(hashes.AsSpan(i * ChunkHash.Size));
        }
        var payload = pool.Rent(BatchCodec.MaxCompressedLength(data.Length));
        var (codec, length) = BatchCodec.Compress(data, payload.WholeSpan, level: 1);
        payload.SetLength(length);
        hashes[40] ^= 1; // chunk 1's hash is wrong
        var header = new ChunkBatchMessage { ObjectId = 0, FirstIndex = 0, Kinds = [1, 1, 1, 1], Hashes = hashes, Codec = codec, RawLength = data.Length };

        var error = Assert.Throws<ProtocolViolationException>(() => BatchVerifier.Verify(new ReceivedBatch { Header = header, Payload = payload }, [obj], pool));
        Assert.Equal(ProtocolError.HashMismatch, error.Code);
        Assert.True(payload.IsDisposed);
        Assert.Equal(2, pool.Rented);
        Assert.Equal(0, pool.Outstanding);
    }

    /// <summary>The sender's shape: take each batch as it comes and dispose it. Returns how many it took.</summary>
    private static async Task<int> ConsumeAsync(BufferBlock<EncodedBatch> output, CancellationToken ct)
    {
        var count = 0;
        while (await output.OutputAvailableAsync(ct))
        {
            while (output.TryReceive(out var batch))
            {
                batch.Dispose();
                count++;
            }
        }
        await output.Completion;
        return count;
    }

    private static void Drain(BufferBlock<EncodedBatch> output)
    {
        while (output.TryReceive(out var leftover))
        {
            leftover.Dispose();
        }
    }

    /// <summary>One memory object of memory-like pages (some zero, some repeated), failing at a chosen batch.</summary>
    private sealed class ScriptedInput(int batches, int failAtBatch) : ISnapshotInput
    {
        private readonly byte[] _image = Image(batches);

        public Action<long>? OnRead { get; init; }

        public SnapshotOfferMessage Offer { get; } = new()
        {
            SnapshotId = "faulted",
            Objects = [new ObjectInfo { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = (long)batches * BatchChunks * Page, ChunkSize = Page }],
        };

        public ValueTask<int> ReadAsync(int objectId, long offset, Memory<byte> destination, CancellationToken ct)
        {
            var batch = offset / (BatchChunks * Page);
            OnRead?.Invoke(batch);
            if (batch == failAtBatch)
            {
                throw new IOException($"disk error at batch {batch}");
            }
            _image.AsSpan((int)offset, destination.Length).CopyTo(destination.Span);
            return ValueTask.FromResult(destination.Length);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;

        private static byte[] Image(int batches)
        {
            var image = new byte[batches * BatchChunks * Page];
            MemoryImageSample.FillDataPages(image, seed: 11);
            for (var page = 0; page < image.Length / Page; page += 3)
            {
                image.AsSpan(page * Page, Page).Clear();
            }
            return image;
        }
    }
}
