namespace StreamClone.Store.Upstream;

/// <summary>What <see cref="SequenceAssembler.OfferAsync"/> did with a batch.</summary>
internal enum SequenceOutcome
{
    /// <summary>It was the next one: emitted, with any held successors it released.</summary>
    Emitted,
    /// <summary>Ahead of the next one and within the window: held until the gap fills.</summary>
    Held,
    /// <summary>Passed already, or already held (another feed brought it first): dropped and counted.</summary>
    Duplicate,
    /// <summary>Ahead of the next one, but holding it would pass the window: dropped and counted (a feed must bring it again).</summary>
    BeyondWindow,
}

/// <summary>
/// Puts bulk batches from one or more feeds (the TCP bulk lane; a multicast receiver) back into stream order
/// (<c>ChunkBatchMessage.Sequence</c> 1..N) in front of the verify stage: a Known entry may name a chunk of an
/// earlier batch, so batches are applied strictly in order. Out-of-order batches wait within a bounded number of
/// payload bytes; duplicates of sequences already passed are dropped. Feeds may offer concurrently; emission is
/// serialized and in order.
/// </summary>
internal sealed class SequenceAssembler : IDisposable
{
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly SortedDictionary<long, ReceivedBatch> _held = [];
    private readonly long _windowBytes;
    private readonly Func<ReceivedBatch, CancellationToken, Task> _emit;
    private long _next = 1;
    private long _heldBytes;
    private long _duplicates;
    private long _beyondWindow;
    private bool _disposed;

    /// <param name="windowBytes">Payload bytes held out of order at most (<see cref="UpstreamOptions.ReorderWindowBytes"/>).</param>
    /// <param name="emit">Receives each batch in order and takes ownership of it (also when it throws).</param>
    public SequenceAssembler(long windowBytes, Func<ReceivedBatch, CancellationToken, Task> emit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(windowBytes);
        _windowBytes = windowBytes;
        _emit = emit;
    }

    /// <summary>The sequence number the stream needs next.</summary>
    public long NextSequence => Interlocked.Read(ref _next);

    public long Duplicates => Interlocked.Read(ref _duplicates);

    public long BeyondWindow => Interlocked.Read(ref _beyondWindow);

    public long HeldBytes => Interlocked.Read(ref _heldBytes);

    /// <summary>Takes ownership of <paramref name="batch"/> (emitted, held, or disposed here).</summary>
    public async Task<SequenceOutcome> OfferAsync(long sequence, ReceivedBatch batch, CancellationToken ct)
    {
        var owned = true;
        try
        {
            await _gate.WaitAsync(ct);
            try
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (sequence < _next || _held.ContainsKey(sequence))
                {
                    Interlocked.Increment(ref _duplicates);
                    return SequenceOutcome.Duplicate;
                }
                if (sequence > _next)
                {
                    // Each payload is bounded by the frame limit, so the sum of what is held cannot wrap.
                    if (_heldBytes + batch.PayloadLength > _windowBytes)
                    {
                        Interlocked.Increment(ref _beyondWindow);
                        return SequenceOutcome.BeyondWindow;
                    }
                    _held.Add(sequence, batch);
                    owned = false;
                    Interlocked.Add(ref _heldBytes, batch.PayloadLength);
                    return SequenceOutcome.Held;
                }
                owned = false;
                await EmitNextAsync(batch, ct);
                while (_held.Remove(_next, out var successor))
                {
                    Interlocked.Add(ref _heldBytes, -successor.PayloadLength);
                    await EmitNextAsync(successor, ct);
                }
                return SequenceOutcome.Emitted;
            }
            finally
            {
                _gate.Release();
            }
        }
        finally
        {
            if (owned)
            {
                batch.Dispose();
            }
        }
    }

    private async Task EmitNextAsync(ReceivedBatch batch, CancellationToken ct)
    {
        // Passed even when the emit fails: the stream cannot go on from a batch the next stage did not take.
        Interlocked.Increment(ref _next);
        await _emit(batch, ct);
    }

    /// <summary>Returns the buffers of batches still held (the session ended before their gap filled).</summary>
    public void Dispose()
    {
        _gate.Wait();
        try
        {
            _disposed = true;
            foreach (var batch in _held.Values)
            {
                batch.Dispose();
            }
            _held.Clear();
            Interlocked.Exchange(ref _heldBytes, 0);
        }
        finally
        {
            _gate.Release();
        }
    }
}
