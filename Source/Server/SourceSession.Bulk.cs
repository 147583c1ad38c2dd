using System.Buffers;
using System.Diagnostics;
using System.Threading.Tasks.Dataflow;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source.Pipeline;

namespace StreamClone.Source.Server;

public sealed partial class SourceSession
{
    private HashSet<ChunkHash> _sinkInventory = [];

    /// <summary>Runs the bulk lane to the end: offer, inventory, the graph's batches, completion, the sink's acknowledgement.</summary>
    internal async Task RunBulkAsync(FrameConnection bulk)
    {
        var ct = _stop.Token;
        var clock = Stopwatch.StartNew();
        try
        {
            await bulk.SendAsync(FrameType.SnapshotOffer, _input.Offer, ReadOnlyMemory<byte>.Empty, ct);
            _sinkInventory = await ReceiveInventoryAsync(bulk, ct);
            SourceLog.SessionStarted(_logger, SessionId, bulk.RemoteEndPoint?.ToString() ?? "?", _sinkInventory.Count);

            var pipeline = new SourcePipeline(_input, _options, _sinkInventory);
            var run = pipeline.RunAsync(ct);
            var send = SendBatchesAsync(bulk, pipeline.Output, ct);
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
        }
        catch (Exception ex)
        {
            Stats.Error = ex.Message;
            SourceLog.SessionFailed(_logger, SessionId, ex.Message);
            if (ex is ProtocolViolationException pv && pv.Code != ProtocolError.PeerError)
            {
                await bulk.FailAsync(pv.Code, pv.Message);
            }
            else if (ex is not OperationCanceledException and not ProtocolViolationException)
            {
                // The snapshot could not be read (a live VM's migration stream failed): tell the sink why, not just hang up.
                var reason = ex is AggregateException { InnerException: { } inner } ? inner.Message : ex.Message;
                await bulk.FailAsync(ProtocolError.IncompleteSnapshot, $"the source cannot deliver snapshot {_input.Offer.SnapshotId}: {reason}");
            }
            throw;
        }
        finally
        {
            Stats.Seconds = clock.Elapsed.TotalSeconds;
            Stats.WireBytes = bulk.BytesSent + (_demandLane?.BytesSent ?? 0);
            Stop("session ended");
        }
        SourceLog.SessionCompleted(_logger, SessionId, Stats.InputBytes, Stats.Seconds, Stats.WireBytes, Stats.DemandRequests);
    }

    private static async Task<HashSet<ChunkHash>> ReceiveInventoryAsync(FrameConnection bulk, CancellationToken ct)
    {
        var inventory = new HashSet<ChunkHash>();
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
            Span<byte> one = stackalloc byte[ChunkHash.Size];
            var payload = frame.Payload;
            for (var i = 0; i < message.Count; i++)
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
    /// once. The flush's wait is the backpressure that stops the graph.
    /// </summary>
    private async Task SendBatchesAsync(FrameConnection bulk, BufferBlock<EncodedBatch> output, CancellationToken ct)
    {
        var frames = new List<(ChunkBatchMessage, ReadOnlyMemory<byte>)>();
        var drained = new List<EncodedBatch>();
        try
        {
            while (await output.OutputAvailableAsync(ct))
            {
                while (drained.Count < 16 && output.TryReceive(out var batch))
                {
                    drained.Add(batch);
                    frames.Add((batch.Header, batch.PayloadMemory));
                }
                await bulk.SendManyAsync(FrameType.ChunkBatch, frames, ct);
                foreach (var batch in drained)
                {
                    Stats.AddBatch(batch.InputBytes, batch.ChunkCount, batch.ZeroChunks, batch.KnownChunks, batch.PayloadLength);
                    batch.ReturnPayload();
                }
                drained.Clear();
                frames.Clear();
            }
            // Rethrows the graph's fault, if any.
            await output.Completion;
        }
        finally
        {
            foreach (var batch in drained)
            {
                batch.ReturnPayload();
            }
            // Drop what the graph still holds so its pooled buffers are not pinned by a dead session.
            while (output.TryReceive(out var leftover))
            {
                leftover.ReturnPayload();
            }
        }
    }
}

internal static class ThrowHelperSource
{
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void StoredMismatch(string got, string expected) =>
        throw new ProtocolViolationException(ProtocolError.UnexpectedFrame, $"sink acknowledged snapshot {got}, expected {expected}");
}
