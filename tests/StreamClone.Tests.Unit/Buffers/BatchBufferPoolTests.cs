using StreamClone.Shared.Buffers;

namespace StreamClone.Tests.Unit.Buffers;

/// <summary>
/// The lease rules and the pool's bound. Each test uses a pool of its own, so counters are exact
/// while other tests rent from <see cref="BatchBufferPool.Shared"/> in parallel.
/// </summary>
public class BatchBufferPoolTests
{
    private const int Batch = 256 << 10;

    [Fact]
    public void A_second_dispose_throws_and_returns_nothing_twice()
    {
        var pool = new BatchBufferPool();
        var buffer = pool.Rent(Batch);
        buffer.Dispose();
        var error = Assert.Throws<InvalidOperationException>(buffer.Dispose);
        Assert.Contains("disposed twice", error.Message);
        Assert.Equal(0, pool.Outstanding);
        // Returned once: a second renter of the class gets the array, a third allocates.
        using var first = pool.Rent(Batch);
        using var second = pool.Rent(Batch);
        Assert.Equal(2, pool.Misses);
    }

    [Fact]
    public void The_bytes_of_a_returned_lease_cannot_be_touched()
    {
        var pool = new BatchBufferPool();
        var buffer = pool.Rent(4096);
        buffer.Span.Fill(1);
        buffer.Dispose();
        Assert.True(buffer.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => buffer.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => buffer.Memory.Length);
        Assert.Throws<ObjectDisposedException>(() => buffer.SetLength(1));
    }

    [Fact]
    public void A_lease_is_exactly_the_length_asked_and_shrinks_only_within_it()
    {
        var pool = new BatchBufferPool();
        using var buffer = pool.Rent(5000);
        Assert.Equal(5000, buffer.Length);
        Assert.Equal(5000, buffer.Span.Length);
        Assert.Equal(5000, buffer.WholeSpan.Length);
        buffer.SetLength(17);
        Assert.Equal(17, buffer.Memory.Length);
        Assert.Equal(5000, buffer.Capacity);
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.SetLength(5001));
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.SetLength(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(-1));
    }

    [Fact]
    public void A_size_class_keeps_at_most_its_capacity_and_counts_every_allocation_as_a_miss()
    {
        var pool = new BatchBufferPool(arraysPerSize: 4);
        var leases = Enumerable.Range(0, 6).Select(_ => pool.Rent(Batch)).ToList();
        Assert.Equal((6, 6, 6), (pool.Rented, pool.Misses, pool.Outstanding));

        leases.ForEach(l => l.Dispose());
        Assert.Equal(0, pool.Outstanding);
        Assert.Equal(4, pool.Retained);

        // Four come back from the pool, two more are allocated.
        leases = [.. Enumerable.Range(0, 6).Select(_ => pool.Rent(Batch))];
        Assert.Equal((12, 8, 6), (pool.Rented, pool.Misses, pool.Outstanding));
        Assert.Equal(0, pool.Retained);
        leases.ForEach(l => l.Dispose());

        // Steady state: as many in flight as the class keeps costs no allocation.
        for (var round = 0; round < 100; round++)
        {
            leases = [.. Enumerable.Range(0, 4).Select(_ => pool.Rent(Batch - round))];
            leases.ForEach(l => l.Dispose());
        }
        Assert.Equal(8, pool.Misses);
    }

    [Fact]
    public void Lengths_share_power_of_two_classes_and_the_smallest_class_is_a_page()
    {
        var pool = new BatchBufferPool();
        pool.Rent(1).Dispose();
        pool.Rent(BatchBufferPool.MinPooledLength).Dispose();
        pool.Rent(Batch / 2 + 1).Dispose();
        pool.Rent(Batch).Dispose();
        Assert.Equal(2, pool.Misses);
        Assert.Equal(2, pool.Retained);
    }

    [Fact]
    public void Empty_and_oversized_leases_are_never_pooled()
    {
        var pool = new BatchBufferPool();
        using (var empty = pool.Rent(0))
        {
            Assert.True(empty.Span.IsEmpty);
        }
        Assert.Equal(0, pool.Misses);

        pool.Rent(BatchBufferPool.MaxPooledLength + 1).Dispose();
        pool.Rent(BatchBufferPool.MaxPooledLength + 1).Dispose();
        Assert.Equal(2, pool.Misses);
        Assert.Equal(0, pool.Retained);
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void What_a_hostile_peer_makes_us_rent_leaves_at_most_the_pools_bound_behind()
    {
        // A peer choosing payload sizes (up to the 8 MiB frame limit) and how many are in flight:
        // whatever it does, the pool keeps at most its per-class numbers.
        var pool = new BatchBufferPool();
        var random = new Random(7);
        for (var round = 0; round < 20; round++)
        {
            var leases = Enumerable.Range(0, 80).Select(_ => pool.Rent(random.Next(1, BatchBufferPool.MaxPooledLength + 1))).ToList();
            leases.ForEach(l => l.Dispose());
        }
        Assert.Equal(0, pool.Outstanding);
        Assert.Equal(4, pool.CapacityFor(BatchBufferPool.MaxPooledLength));
        Assert.Equal(BatchBufferPool.DefaultArraysPerSize, pool.CapacityFor(Batch));

        var bound = 0L;
        for (var size = (long)BatchBufferPool.MinPooledLength; size <= BatchBufferPool.MaxPooledLength; size *= 2)
        {
            bound += size * pool.CapacityFor((int)size);
        }
        Assert.True(bound <= 200L << 20, $"the pool may keep {bound >> 20} MiB");
        Assert.True(pool.Retained <= 12 * BatchBufferPool.DefaultArraysPerSize);
    }

    [Fact]
    public async Task Leases_returned_on_other_threads_are_reused_and_counted_exactly()
    {
        var pool = new BatchBufferPool(arraysPerSize: 8);
        var ct = TestContext.Current.CancellationToken;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 2000; i++)
            {
                using var a = pool.Rent(Batch);
                using var b = pool.Rent(64 << 10);
                a.Span[0] = b.Span[0];
            }
        }, ct)));
        Assert.Equal(16000, pool.Rented);
        Assert.Equal(0, pool.Outstanding);
        // At most 4 threads × 1 lease per class in flight at once: 8 allocations at the very most.
        Assert.True(pool.Misses <= 8, $"{pool.Misses} misses");
    }

    [Fact]
    public void A_scope_returns_the_leases_nobody_disposed_and_only_those()
    {
        var pool = new BatchBufferPool();
        var scope = new BatchBufferScope(pool);
        var kept = scope.Rent(Batch);
        var dropped = Enumerable.Range(0, 3).Select(_ => scope.Rent(Batch)).ToList();
        kept.Dispose();
        Assert.Equal(3, scope.Live);

        Assert.Equal(3, scope.ReturnAbandoned());
        Assert.Equal(0, pool.Outstanding);
        Assert.Equal(0, scope.Live);
        Assert.All(dropped, d => Assert.True(d.IsDisposed));
        // A holder that turns up afterwards broke the rule the scope relies on: it hears so.
        Assert.Throws<InvalidOperationException>(dropped[0].Dispose);
        Assert.Equal(0, scope.ReturnAbandoned());
    }

    [Fact]
    public async Task A_scope_returns_after_its_holders_finish_however_they_end()
    {
        var pool = new BatchBufferPool();
        var scope = new BatchBufferScope(pool);
        _ = scope.Rent(Batch);
        var holder = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var returned = scope.ReturnAbandonedAfterAsync(holder.Task, Task.CompletedTask);
        Assert.False(returned.IsCompleted);
        Assert.Equal(1, pool.Outstanding);

        holder.SetException(new IOException("the stage failed"));
        await returned;
        Assert.Equal(0, pool.Outstanding);
    }

#if DEBUG
    // DEBUG builds only (the finalizer exists there); ./test builds Release, where the pool's
    // Outstanding counter is the leak check (see the pipeline tests).
    [Fact]
    public void Debug_builds_count_a_lease_that_was_never_disposed()
    {
        var before = BatchBuffer.LeakCount;
        RentAndForget();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.True(BatchBuffer.LeakCount > before);
        Assert.Contains(nameof(RentAndForget), BatchBuffer.LastLeak);

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        static void RentAndForget() => new BatchBufferPool().Rent(4096);
    }
#endif
}
