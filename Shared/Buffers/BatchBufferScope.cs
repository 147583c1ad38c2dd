namespace StreamClone.Shared.Buffers;

/// <summary>
/// The leases one dataflow graph (a source's bulk pass, a sink's bulk receive) rents, so that none
/// outlives the graph. A block that faults or is cancelled drops the messages it buffers without
/// telling anyone, and each of those held a lease its next stage would have disposed: Dataflow has
/// no hook for dropped items, so the graph's owner calls <see cref="ReturnAbandoned"/> once every
/// stage and consumer has stopped, and the pool gets those arrays back. A lease leaves the scope
/// when its holder disposes it, so the scope only ever holds leases nobody disposed yet.
/// </summary>
public sealed class BatchBufferScope(BatchBufferPool pool) : IBatchBufferSource
{
    private readonly HashSet<BatchBuffer> _live = new(ReferenceEqualityComparer.Instance);
    private readonly Lock _lock = new();

    public BatchBufferPool Pool { get; } = pool;

    /// <summary>Leases rented here and not yet disposed.</summary>
    public int Live
    {
        get
        {
            lock (_lock)
            {
                return _live.Count;
            }
        }
    }

    public BatchBuffer Rent(int length)
    {
        var buffer = Pool.Rent(length, this);
        lock (_lock)
        {
            _live.Add(buffer);
        }
        return buffer;
    }

    internal void Forget(BatchBuffer buffer)
    {
        lock (_lock)
        {
            _live.Remove(buffer);
        }
    }

    /// <summary>
    /// Disposes every lease still live and returns how many there were. Only once nothing can touch
    /// them any more: every block's Completion and every consumer loop has finished (a holder still
    /// running would dispose its lease a second time, which throws).
    /// </summary>
    public int ReturnAbandoned()
    {
        BatchBuffer[] abandoned;
        lock (_lock)
        {
            abandoned = [.. _live];
        }
        foreach (var buffer in abandoned)
        {
            buffer.Dispose();
        }
        return abandoned.Length;
    }

    /// <summary>
    /// <see cref="ReturnAbandoned"/> once all <paramref name="holders"/> have finished, however they
    /// end; for a failure path that must not wait for a stage still finishing its current item.
    /// </summary>
    public Task ReturnAbandonedAfterAsync(params Task[] holders) =>
        Task.WhenAll(holders).ContinueWith(all =>
        {
            // Their failures are reported by whoever awaited them; observed here so none goes unobserved.
            _ = all.Exception;
            ReturnAbandoned();
        }, CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
}
