using System.Buffers;
using System.Runtime.ExceptionServices;
using System.Threading.Tasks.Dataflow;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Threading;
using StreamClone.Shared.Transport;

namespace StreamClone.Sink.Session;

public sealed partial class SinkSession
{
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
        var verify = new TransformBlock<ReceivedBatch, VerifiedBatch>(b => BatchVerifier.Verify(b, objects), new ExecutionDataflowBlockOptions
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

        try
        {
            var receive = _bulk.ReceiveAsync(async frame =>
            {
                switch (frame.Type)
                {
                    case FrameType.ChunkBatch:
                        var header = frame.DecodeHeader<ChunkBatchMessage>();
                        var payload = frame.Payload.IsEmpty ? [] : BatchBuffers.Pool.Rent((int)frame.Payload.Length);
                        frame.Payload.CopyTo(payload);
                        await PostAsync(verify, new ReceivedBatch { Header = header, Payload = payload, PayloadLength = (int)frame.Payload.Length }, ct);
                        return true;
                    case FrameType.SnapshotComplete:
                        var completion = frame.DecodeHeader<SnapshotCompleteMessage>();
                        await PostAsync(verify, new ReceivedBatch { Header = new ChunkBatchMessage(), Payload = [], PayloadLength = 0, Completion = completion }, ct);
                        return false;
                    default:
                        ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"bulk lane: unexpected {frame.Type}");
                        return false;
                }
            }, ct);
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
            await _bulk.SendAsync(FrameType.SnapshotStored,
                new SnapshotStoredMessage { SnapshotId = Snapshot.SnapshotId, ChunksReceived = Stats.Chunks },
                ReadOnlyMemory<byte>.Empty, ct);
            SinkLog.SnapshotStored(_logger, Snapshot.SnapshotId, Snapshot.TotalChunks, WireBytes, Seconds);
            CloseReason = Shared.Transport.CloseReason.Completed($"snapshot {Snapshot.SnapshotId} stored from {Source}");
            return manifest;
        }
        catch (Exception caught)
        {
            // Several verify workers failing at once fault the block with an AggregateException
            // (nested once more by completion propagation): the first cause is the session's one reason.
            var ex = FailureReport.FirstCause(caught);
            var reason = await SessionFailure.CloseAsync(_bulk, ex, StoreFault);
            CloseReason ??= reason;
            SinkLog.SessionFailed(_logger, SessionId, Sentence(reason.ToString()));
            FailureReport.MarkLogged(ex);
            ((IDataflowBlock)verify).Fault(ex);
            // Drain so rented buffers go back; nothing unverified was stored.
            while (verify.TryReceive(out var leftover))
            {
                leftover.Return();
            }
            if (ex != caught)
            {
                ExceptionDispatchInfo.Throw(ex);
            }
            throw;
        }
    }

    private static async Task PostAsync(ITargetBlock<ReceivedBatch> target, ReceivedBatch batch, CancellationToken ct)
    {
        if (!await target.SendAsync(batch, ct))
        {
            if (batch.Payload.Length > 0)
            {
                BatchBuffers.Pool.Return(batch.Payload);
            }
            // The verify stage declined because it faulted (or the session stopped): its exception is the
            // real cause, so wait for the block to finish faulting and throw that, rather than racing the
            // store stage's completion to report it (a lost race reported "stages stopped" instead).
            await target.Completion.WaitAsync(ct);
            throw new OperationCanceledException("the verify/store stages stopped");
        }
    }
}
