using System.Buffers;
using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Dataflow;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Threading;
using StreamClone.Shared.Transport;

namespace StreamClone.Store.Upstream;

public sealed partial class UpstreamSession
{
    // Completes once a failed bulk stream's abandoned buffers are back in the pool (DisposeAsync waits for it).
    private Task _buffersReturned = Task.CompletedTask;

    /// <summary>
    /// Receives the bulk stream to the end and returns the verified, durable manifest:
    /// <code>
    /// socket → frame loop (copies payload, 1) → verify: decompress + BLAKE3 (N parallel, order kept)
    ///   → store (1, in order) → on SnapshotComplete: root hashes checked, manifest written, ack sent
    /// </code>
    /// Bounded stages: when the disk or the CPU is behind, the frame loop waits to post, stops
    /// reading, and TCP flow control slows the source. Storing in order keeps every Known entry
    /// behind the Data entry that first brought its hash.
    /// </summary>
    public async Task<SnapshotManifest> RunAsync()
    {
        var ct = _stop.Token;
        var objects = Snapshot.Objects;
        // Payload copies and decompressed data of this stream; what a faulted stage drops is returned below.
        var buffers = new BatchBufferScope(_options.Buffers);
        var verify = new TransformBlock<ReceivedBatch, VerifiedBatch>(b => BatchVerifier.Verify(b, objects, buffers), new ExecutionDataflowBlockOptions
        {
            BoundedCapacity = _options.StageCapacity * _options.Parallelism,
            MaxDegreeOfParallelism = _options.Parallelism,
            EnsureOrdered = true,
            CancellationToken = ct,
            TaskScheduler = BackgroundPriorityScheduler.Bulk,
        });
        SnapshotManifest? manifest = null;
        var store = new ActionBlock<VerifiedBatch>(async batch =>
        {
            if (batch.Completion is { } completion)
            {
                manifest = await CompleteAsync(completion, ct);
                return;
            }
            Store(batch, demand: false);
        }, new ExecutionDataflowBlockOptions { BoundedCapacity = _options.StageCapacity, CancellationToken = ct, TaskScheduler = BackgroundPriorityScheduler.Bulk });
        verify.LinkTo(store, new DataflowLinkOptions { PropagateCompletion = true });

        var observer = _options.Observer;
        // Cancelled when a completion held behind missing batches was applied: the lane has nothing more to bring then.
        using var receiveDone = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var assembler = new SequenceAssembler(_options.ReorderWindowBytes, async (batch, token) =>
        {
            if (batch.Completion is { } held)
            {
                // A completion that waited in order behind the stream's last batch (multicast brought the tail).
                if (observer is not null)
                {
                    await observer.CompletedAsync(held, token);
                }
                await PostAsync(verify, batch, token);
                try
                {
                    await receiveDone.CancelAsync();
                }
                catch (ObjectDisposedException)
                {
                    // The session already ended (it failed meanwhile): nothing left to stop.
                }
                return;
            }
            if (observer is not null)
            {
                try
                {
                    // Cut-through: the relay forwards the batch before it is verified or written here.
                    await observer.BatchReceivedAsync(batch.Header, batch.Payload is null ? default : batch.Payload.Memory, token);
                }
                catch
                {
                    batch.Dispose();
                    throw;
                }
            }
            await PostAsync(verify, batch, token);
        });
        _bulkBuffers = buffers;
        _assembler = assembler;
        _assemblerReady.TrySetResult();

        Task receive = Task.CompletedTask;
        try
        {
            receive = _bulk.ReceiveAsync(async frame =>
            {
                switch (frame.Type)
                {
                    case FrameType.ChunkBatch:
                        var header = frame.DecodeHeader<ChunkBatchMessage>();
                        CheckBulkSequence(header.Sequence, assembler.NextSequence);
                        // FrameReader capped the length at TransportOptions.MaxPayloadBytes. OfferAsync takes ownership.
                        var payload = buffers.Rent((int)frame.Payload.Length);
                        frame.Payload.CopyTo(payload.Span);
                        await assembler.OfferAsync(header.Sequence, new ReceivedBatch { Header = header, Payload = payload }, ct);
                        return true;
                    case FrameType.SnapshotComplete:
                        var completion = frame.DecodeHeader<SnapshotCompleteMessage>();
                        if (_externalFeed && completion.LastSequence != 0)
                        {
                            return await OfferCompletionAsync(assembler, completion, ct);
                        }
                        if (observer is not null)
                        {
                            await observer.CompletedAsync(completion, ct);
                        }
                        await PostAsync(verify, new ReceivedBatch { Header = new ChunkBatchMessage(), Payload = null, Completion = completion }, ct);
                        return false;
                    case FrameType.MulticastJoin or FrameType.MulticastLeave when WantsMulticast:
                        await OnMulticastFrameAsync(frame, ct);
                        return true;
                    default:
                        if (BulkControlHandler is { } handler)
                        {
                            await handler(frame, ct);
                            return true;
                        }
                        ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"bulk lane: unexpected {frame.Type}");
                        return false;
                }
            }, _externalFeed ? Timeout.InfiniteTimeSpan : _bulk.ReceiveIdleTimeout, receiveDone.Token);
            // The lane ends quietly when a held completion was applied (receiveDone); any other cancellation is a failure.
            receive = IgnoreCancelWhenDone(receive, receiveDone.Token, ct);
            // A failing store/verify stage must stop the receive loop too, not leave it blocked on a full queue.
            var first = await Task.WhenAny(receive, store.Completion);
            if (first == store.Completion && store.Completion.IsFaulted)
            {
                await store.Completion;
            }
            await receive;
            verify.Complete();
            await store.Completion;
            if (manifest is null)
            {
                return ThrowHelper.ThrowProtocol<SnapshotManifest>(ProtocolError.IncompleteSnapshot, "the bulk stream ended without completing the snapshot");
            }
            await StopMulticastAsync();
            await _bulk.SendAsync(FrameType.SnapshotStored,
                new SnapshotStoredMessage { SnapshotId = Snapshot.SnapshotId, ChunksReceived = Stats.Chunks },
                ReadOnlyMemory<byte>.Empty, ct);
            UpstreamLog.SnapshotStored(_logger, Snapshot.SnapshotId, Snapshot.TotalChunks, WireBytes, Seconds);
            assembler.Dispose();
            CloseReason = Shared.Transport.CloseReason.Completed($"snapshot {Snapshot.SnapshotId} stored from {Source}");
            return manifest;
        }
        catch (Exception caught)
        {
            // Several verify workers failing at once fault the block with an AggregateException
            // (nested once more by completion propagation): the first cause is the session's one reason.
            var ex = await CauseAsync(FailureReport.FirstCause(caught), verify.Completion);
            var reason = await SessionFailure.CloseAsync(_bulk, ex, StoreFault);
            CloseReason ??= reason;
            UpstreamLog.SessionFailed(_logger, SessionId, Sentence(reason.ToString()));
            FailureReport.MarkLogged(ex);
            // Nothing unverified was stored. The faulted blocks drop the batches they hold; those
            // buffers go back once the receive loop and both stages have stopped: not awaited here
            // (the store stage may be finishing a batch, and the caller should hear the reason now)
            // but by DisposeAsync, after it has stopped them.
            ((IDataflowBlock)verify).Fault(ex);
            // Batches the assembler still holds go back first (they leave the scope's list as they do), then the rest.
            var held = Task.WhenAll(receive, verify.Completion, store.Completion).ContinueWith(_ => assembler.Dispose(),
                CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            _buffersReturned = buffers.ReturnAbandonedAfterAsync(receive, verify.Completion, store.Completion, held);
            if (ex != caught)
            {
                ExceptionDispatchInfo.Throw(ex);
            }
            throw;
        }
    }

    /// <summary>
    /// The session's one cause. A batch that fails verification also leaves the snapshot incomplete, and the
    /// store stage can say so first: the completion item can pass the verify stage beside the failing batch (its
    /// workers run in parallel), so the store reports IncompleteSnapshot while the HashMismatch that caused it is
    /// still on its way. The verify stage's fault is then the cause. Waiting for it is short: the verify stage was
    /// completed before the store stage saw the completion item, so it ends as soon as its workers stop.
    /// </summary>
    private static async Task<Exception> CauseAsync(Exception ex, Task verifyCompletion)
    {
        if (ex is ProtocolViolationException { Code: ProtocolError.IncompleteSnapshot })
        {
            try
            {
                await verifyCompletion.WaitAsync(TimeSpan.FromSeconds(10));
            }
            catch (Exception waited) when (waited is not OutOfMemoryException)
            {
                // Faulted (read below) or still running after the bound: the store's reason stands then.
            }
        }
        return verifyCompletion.IsFaulted && verifyCompletion.Exception is { } fault ? FailureReport.FirstCause(fault) : ex;
    }

    /// <summary>
    /// A completion naming the stream's last batch, beside an external feed: it goes into the assembler right behind
    /// that batch, so it is applied only once every batch is in (multicast may still be bringing the tail). Returns
    /// whether the lane must keep receiving (the completion is held; a leave or repairs may still come over it).
    /// </summary>
    private async Task<bool> OfferCompletionAsync(SequenceAssembler assembler, SnapshotCompleteMessage completion, CancellationToken ct)
    {
        // Every batch carries at least one chunk, so the stream has at most as many batches as the snapshot has chunks.
        if (completion.LastSequence < 0 || completion.LastSequence > Snapshot.TotalChunks || completion.LastSequence + 1 < assembler.NextSequence)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader,
                $"bulk lane: completion names batch {completion.LastSequence} as the last, but batch {assembler.NextSequence - 1} already arrived");
        }
        var outcome = await assembler.OfferAsync(completion.LastSequence + 1,
            new ReceivedBatch { Header = new ChunkBatchMessage(), Payload = null, Completion = completion }, ct);
        return outcome != SequenceOutcome.Emitted;
    }

    private static async Task IgnoreCancelWhenDone(Task receive, CancellationToken done, CancellationToken session)
    {
        try
        {
            await receive;
        }
        catch (OperationCanceledException) when (done.IsCancellationRequested && !session.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// On the TCP bulk lane alone, batches come 1, 2, 3, … over one ordered connection: a peer that skips or repeats
    /// one is lying about the stream. With an external feed (multicast) beside it, the lane may bring any batch the
    /// receiver missed, so only the range is checked and the assembler orders and deduplicates.
    /// </summary>
    private void CheckBulkSequence(long sequence, long next)
    {
        if (sequence < 1)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OutOfSequence, $"bulk lane: batch sequence {sequence} (bulk batches are numbered from 1)");
        }
        if (!_externalFeed && sequence != next)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OutOfSequence, $"bulk lane: batch {sequence} where {next} was due");
        }
    }

    /// <summary>Takes ownership of <paramref name="batch"/>: it becomes the verify stage's, or is disposed here if the stage declines.</summary>
    private static async Task PostAsync(ITargetBlock<ReceivedBatch> target, ReceivedBatch batch, CancellationToken ct)
    {
        var accepted = false;
        try
        {
            accepted = await target.SendAsync(batch, ct);
        }
        finally
        {
            if (!accepted)
            {
                batch.Dispose();
            }
        }
        if (!accepted)
        {
            // The verify stage declined because it faulted (or the session stopped): its exception is the
            // real cause, so wait for the block to finish faulting and throw that, rather than racing the
            // store stage's completion to report it (a lost race reported "stages stopped" instead).
            await target.Completion.WaitAsync(ct);
            throw new OperationCanceledException("the verify/store stages stopped");
        }
    }
}
