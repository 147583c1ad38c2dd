using StreamClone.Shared.Buffers;
using StreamClone.Shared.Protocol;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Unit.Pipeline;

/// <summary>The in-order assembler in front of the verify stage: order, duplicates, the window bound, two feeds.</summary>
public sealed class SequenceAssemblerTests
{
    private readonly BatchBufferPool _pool = new();
    private readonly BatchBufferScope _buffers;
    private readonly List<long> _emitted = [];

    public SequenceAssemblerTests() => _buffers = new BatchBufferScope(_pool);

    private SequenceAssembler Create(long windowBytes) => new(windowBytes, (batch, _) =>
    {
        lock (_emitted)
        {
            _emitted.Add(batch.Header.Sequence);
        }
        batch.Dispose();
        return Task.CompletedTask;
    });

    private ReceivedBatch Batch(long sequence, int bytes = 100) =>
        new() { Header = new ChunkBatchMessage { Sequence = sequence }, Payload = _buffers.Rent(bytes) };

    [Fact]
    public async Task Batches_out_of_order_within_the_window_are_emitted_in_order()
    {
        using var assembler = Create(windowBytes: 1000);

        Assert.Equal(SequenceOutcome.Held, await assembler.OfferAsync(3, Batch(3), default));
        Assert.Equal(SequenceOutcome.Held, await assembler.OfferAsync(2, Batch(2), default));
        Assert.Empty(_emitted);
        Assert.Equal(200, assembler.HeldBytes);
        Assert.Equal(SequenceOutcome.Emitted, await assembler.OfferAsync(1, Batch(1), default));

        Assert.Equal([1, 2, 3], _emitted);
        Assert.Equal(4, assembler.NextSequence);
        Assert.Equal(0, assembler.HeldBytes);
        Assert.Equal(0, _buffers.Live);
    }

    [Fact]
    public async Task Duplicates_of_passed_or_held_sequences_are_dropped_and_counted()
    {
        using var assembler = Create(windowBytes: 1000);
        await assembler.OfferAsync(1, Batch(1), default);
        await assembler.OfferAsync(3, Batch(3), default);

        Assert.Equal(SequenceOutcome.Duplicate, await assembler.OfferAsync(1, Batch(1), default));
        Assert.Equal(SequenceOutcome.Duplicate, await assembler.OfferAsync(3, Batch(3), default));
        await assembler.OfferAsync(2, Batch(2), default);

        Assert.Equal([1, 2, 3], _emitted);
        Assert.Equal(2, assembler.Duplicates);
        Assert.Equal(0, _buffers.Live);
    }

    [Fact]
    public async Task A_batch_that_would_pass_the_window_is_dropped_and_the_held_ones_stay()
    {
        using var assembler = Create(windowBytes: 250);
        Assert.Equal(SequenceOutcome.Held, await assembler.OfferAsync(2, Batch(2), default));
        Assert.Equal(SequenceOutcome.Held, await assembler.OfferAsync(3, Batch(3), default));

        Assert.Equal(SequenceOutcome.BeyondWindow, await assembler.OfferAsync(4, Batch(4), default));
        Assert.Equal(1, assembler.BeyondWindow);
        Assert.Equal(200, assembler.HeldBytes);

        // The feed brings it again once the gap filled: nothing is lost, nothing waits past the bound.
        await assembler.OfferAsync(1, Batch(1), default);
        Assert.Equal(SequenceOutcome.Emitted, await assembler.OfferAsync(4, Batch(4), default));
        Assert.Equal([1, 2, 3, 4], _emitted);
        Assert.Equal(0, _buffers.Live);
    }

    [Fact]
    public async Task Two_feeds_racing_with_overlapping_batches_emit_each_sequence_once_in_order()
    {
        const int Count = 2000;
        using var assembler = Create(windowBytes: long.MaxValue);
        // One feed brings every batch in order (TCP); the other brings a shuffled, lossy copy (multicast).
        var random = new Random(8);
        var lossy = Enumerable.Range(1, Count).Where(_ => random.Next(10) != 0).OrderBy(_ => random.Next()).ToArray();
        var tcp = Task.Run(async () =>
        {
            for (var s = 1; s <= Count; s++)
            {
                await assembler.OfferAsync(s, Batch(s), default);
            }
        });
        var multicast = Task.Run(async () =>
        {
            foreach (var s in lossy)
            {
                await assembler.OfferAsync(s, Batch(s), default);
            }
        });
        await Task.WhenAll(tcp, multicast);

        Assert.Equal(Enumerable.Range(1, Count).Select(s => (long)s), _emitted);
        Assert.Equal(lossy.Length, assembler.Duplicates);
        Assert.Equal(0, _buffers.Live);
    }

    [Fact]
    public async Task Disposing_returns_the_batches_still_held()
    {
        var assembler = Create(windowBytes: 1000);
        await assembler.OfferAsync(5, Batch(5), default);
        Assert.Equal(1, _buffers.Live);

        assembler.Dispose();

        Assert.Equal(0, _buffers.Live);
        Assert.Empty(_emitted);
    }
}
