using System.Buffers;
using System.Diagnostics;
using System.Threading.Tasks.Dataflow;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source.Pipeline;

namespace StreamClone.Source.Server;

public sealed partial class SourceSession
{
    // Replaced by an empty set when the session ends, so a finished session that something still
    // references (a progress display, a late demand lane) does not pin the sink's inventory.
    private ChunkHashSet _sinkInventory = new();

    /// <summary>
    /// The session's own handshake: sends the offer and takes the sink's inventory, all within
    /// <see cref="TransportOptions.InventoryTimeout"/>. The session streams only after this.
    /// </summary>
    internal async Task OpenAsync(FrameConnection bulk)
    {
        var timeout = bulk.Options.InventoryTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        deadline.CancelAfter(timeout);
        try
        {
            await bulk.SendAsync(FrameType.SnapshotOffer, _input.Offer, ReadOnlyMemory<byte>.Empty, deadline.Token);
            _sinkInventory = await ReceiveInventoryAsync(bulk, deadline.Token);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !_stop.IsCancellationRequested)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.LimitExceeded, $"the inventory was not complete within {timeout.TotalSeconds:0.#} s of the offer");
        }
        Stats.InventoryHashes = _sinkInventory.Count;
        SourceLog.SessionStarted(_logger, SessionId, Peer.ToString(), _sinkInventory.Count);
    }

    /// <summary>Runs the bulk lane to the end (after <see cref="OpenAsync"/>): the graph's batches, completion, the sink's acknowledgement.</summary>
    internal async Task RunBulkAsync(FrameConnection bulk)
    {
        var ct = _stop.Token;
        var clock = Stopwatch.StartNew();
        var buffers = new BatchBufferScope(_options.Buffers);
        Task? run = null, send = null;
        try
        {
            var pipeline = new SourcePipeline(_input, _options, _sinkInventory, buffers);
            run = pipeline.RunAsync(ct);
            send = SendBatchesAsync(bulk, pipeline.Output, ct);
            // Whichever fails first stops the other: a dead sink cancels reading, a read error ends sending.
            await Task.WhenAny(run, send);
            if (run.IsFaulted || send.IsFaulted)
            {
                _stop.Cancel();
            }
            await Task.WhenAll(run, send);

            await bulk.SendAsync(FrameType.SnapshotComplete,
                new SnapshotCompleteMessage { RootHashes = pipeline.RootHashes, ChunksSent = Stats.Chunks },
                ReadOnlyMemory<byte>.Empty, ct);
            var stored = await bulk.ReceiveOneAsync<SnapshotStoredMessage>(FrameType.SnapshotStored, ct);
            if (stored.SnapshotId != _input.Offer.SnapshotId)
            {
                ThrowHelperSource.StoredMismatch(stored.SnapshotId, _input.Offer.SnapshotId);
            }
            Stats.Completed = true;
            Stats.CloseReason = CloseReason.Completed($"snapshot {stored.SnapshotId} stored by {Peer}");
            bulk.Abort(Stats.CloseReason);
        }
        catch (Exception ex)
        {
            Stats.CloseReason = await SessionFailure.CloseAsync(bulk, ex, CannotDeliver, Volatile.Read(ref _stopReason),
                reason => SourceLog.SessionFailed(_logger, SessionId, reason.ToString()));
            throw;
        }
        finally
        {
            // Both have finished here (WhenAll above, or they never started): what a faulted graph
            // dropped goes back to the pool.
            if ((run?.IsCompleted ?? true) && (send?.IsCompleted ?? true))
            {
                buffers.ReturnAbandoned();
            }
            Stats.Seconds = clock.Elapsed.TotalSeconds;
            Stats.WireBytes = bulk.BytesSent + (_demandLane?.BytesSent ?? 0);
            Stop(CloseReason.LocalShutdown("session ended"));
            _sinkInventory = new();
        }
        SourceLog.SessionCompleted(_logger, SessionId, Stats.InputBytes, Stats.Seconds, Stats.WireBytes, Stats.DemandRequests);
    }

    /// <summary>
    /// The source's own failure (the snapshot could not be read: a live VM's migration stream failed) is
    /// told to the sink as IncompleteSnapshot, so it does not just see the connection drop.
    /// </summary>
    private CloseReason CannotDeliver(Exception ex) =>
        CloseReason.Fault(ProtocolError.IncompleteSnapshot, $"the source cannot deliver snapshot {_input.Offer.SnapshotId}: {ex.Message}");

    /// <summary>
    /// Inventory frames until one says Last. The whole inventory may list at most as many hashes as
    /// the offer has chunks (more cannot help the sink: each chunk needs at most one hash), each
    /// frame at most <see cref="WireLimits.MaxInventoryHashesPerFrame"/>; beyond either the peer is
    /// cut off. Of those, <see cref="SourceOptions.MaxInventoryHashes"/> are kept (a policy bound on
    /// memory; the rest only cost the sink bandwidth it would have saved).
    /// </summary>
    private async Task<ChunkHashSet> ReceiveInventoryAsync(FrameConnection bulk, CancellationToken ct)
    {
        var offered = _input.Offer.Objects.Sum(o => ChunkMath.ChunkCount(o.Size, o.ChunkSize));
        var keep = _options.MaxInventoryHashes;
        var inventory = new ChunkHashSet();
        long listed = 0;
        await bulk.ReceiveAsync(frame =>
        {
            if (frame.Type != FrameType.Inventory)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"expected Inventory, got {frame.Type}");
            }
            var message = frame.DecodeHeader<InventoryMessage>();
            if (message.Count < 0 || frame.Payload.Length != (long)message.Count * ChunkHash.Size)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader,
                    $"inventory frame says {message.Count} hashes but carries {frame.Payload.Length} bytes");
            }
            if (message.Count > WireLimits.MaxInventoryHashesPerFrame)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.LimitExceeded,
                    $"inventory frame of {message.Count} hashes, more than the {WireLimits.MaxInventoryHashesPerFrame} allowed per frame");
            }
            listed += message.Count;
            if (listed > offered)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.LimitExceeded,
                    $"the inventory lists {listed} hashes so far, more than the {offered} chunks of the offer");
            }
            Span<byte> one = stackalloc byte[ChunkHash.Size];
            var payload = frame.Payload;
            for (var i = 0; i < message.Count && inventory.Count < keep; i++)
            {
                payload.Slice(i * ChunkHash.Size, ChunkHash.Size).CopyTo(one);
                inventory.Add(ChunkHash.Read(one));
            }
            return ValueTask.FromResult(!message.Last);
        }, ct);
        return inventory;
    }

    /// <summary>
    /// The sender loop: wait for one batch, drain whatever else is ready, write them all and flush
    /// once. The flush's wait is the backpressure that stops the graph. Takes ownership of every
    /// batch it receives from <paramref name="output"/> and disposes it once its frame is in the pipe.
    /// <para>
    /// Compression stays in the parallel encode stage and the payload is copied once into the pipe,
    /// rather than compressed here straight into the PipeWriter's span: this loop is single, so that
    /// would serialise zstd behind one thread to save a memcpy of the compressed bytes. Measured on
    /// 512 MiB of the memory-like bench image (thread CPU time, level -1): compressing the batches
    /// took ~800 ms, copying their payloads 12-13 ms, so the copy is ~1.5% of the work it would
    /// have moved onto this one thread (the CRC, which needs the sequence number, is here either way).
    /// </para>
    /// </summary>
    private async Task SendBatchesAsync(FrameConnection bulk, BufferBlock<EncodedBatch> output, CancellationToken ct)
    {
        var frames = new List<(ChunkBatchMessage, ReadOnlyMemory<byte>)>();
        var drained = new List<EncodedBatch>();
        long sequence = 0;
        try
        {
            while (await output.OutputAvailableAsync(ct))
            {
                while (drained.Count < 16 && output.TryReceive(out var batch))
                {
                    drained.Add(batch);
                    batch.Header.Sequence = ++sequence;
                    frames.Add((batch.Header, batch.PayloadMemory));
                }
                await bulk.SendManyAsync(FrameType.ChunkBatch, frames, ct);
                frames.Clear();
                foreach (var batch in drained)
                {
                    Stats.AddBatch(batch.InputBytes, batch.ChunkCount, batch.ZeroChunks, batch.KnownChunks, batch.PayloadLength);
                }
                DisposeAll(drained);
            }
            // Rethrows the graph's fault, if any.
            await output.Completion;
        }
        finally
        {
            DisposeAll(drained);
            // Drop what the graph still holds so its pooled buffers are not pinned by a dead session.
            while (output.TryReceive(out var leftover))
            {
                leftover.Dispose();
            }
        }
    }

    private static void DisposeAll(List<EncodedBatch> batches)
    {
        // Removed before disposing, so the finally above never sees a batch twice.
        while (batches.Count > 0)
        {
            var last = batches[^1];
            batches.RemoveAt(batches.Count - 1);
            last.Dispose();
        }
    }
}

internal static class ThrowHelperSource
{
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void StoredMismatch(string got, string expected) =>
        throw new ProtocolViolationException(ProtocolError.UnexpectedFrame, $"sink acknowledged snapshot {got}, expected {expected}");
}
