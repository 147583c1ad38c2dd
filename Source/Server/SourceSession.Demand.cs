using StreamClone.Shared;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source.Pipeline;

namespace StreamClone.Source.Server;

public sealed partial class SourceSession
{
    /// <summary>
    /// The demand lane: each request is read, hashed, compressed and answered inline, on its own
    /// connection, so an answer never waits behind bulk frames in our pipe or in the kernel.
    /// Known entries here come only from the sink's inventory, never from this stream's dedup set:
    /// a demand answer can overtake the bulk frame that first carries a hash.
    /// </summary>
    internal async Task RunDemandAsync(FrameConnection demand)
    {
        _demandLane = demand;
        var ct = _stop.Token;
        var objects = _input.Offer.Objects;
        try
        {
            await demand.ReceiveAsync(async frame =>
            {
                if (frame.Type != FrameType.DemandRequest)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"demand lane: unexpected {frame.Type}");
                }
                var request = frame.DecodeHeader<DemandRequestMessage>();
                // Checked here once against the offer; BatchEncoder and the input check again before touching memory.
                // Requests are answered one at a time per lane, so a sink holds at most one answer's
                // buffers (MaxDemandBytes raw plus its compressed copy) however many it sends.
                var obj = DemandLayout.Validate(request, objects);
                Stats.AddDemand();
                StreamCloneMetrics.RecordDemandRequest(MetricRole.Source);
                var batch = await BatchEncoder.ReadAsync(_input, obj, request.FirstIndex, request.Count, request.RequestId, _options.Buffers, ct);
                try
                {
                    BatchEncoder.Classify(batch);
                    for (var i = 0; i < batch.Count; i++)
                    {
                        if (!request.ForceData && batch.Kinds[i] == ChunkEntryKind.Data && _sinkInventory.Contains(batch.Hashes[i]))
                        {
                            batch.Kinds[i] = ChunkEntryKind.Known;
                        }
                    }
                    StreamCloneMetrics.RecordChunkKinds(MetricRole.Source, Lane.Demand, batch.Kinds.AsSpan(0, batch.Count));
                }
                catch
                {
                    batch.Raw.Dispose();
                    throw;
                }
                // Encode takes the raw buffer (disposes it, also when it throws).
                using (var encoded = BatchEncoder.Encode(batch, _options.CompressionLevel, _options.Buffers))
                {
                    await demand.SendAsync(FrameType.ChunkBatch, encoded.Header, encoded.PayloadMemory, ct);
                }
                SourceLog.DemandServed(_logger, request.RequestId, request.ObjectId, request.FirstIndex, request.Count);
                return true;
            }, ct);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            await SessionFailure.CloseAsync(demand, ex, CannotDeliver, Volatile.Read(ref _stopReason), reason =>
            {
                switch (reason.Kind)
                {
                    case CloseKind.Protocol or CloseKind.Fault:
                        // The sink broke the protocol on this lane, or we could not read what it asked for: told (Error
                        // frame) and logged here; the bulk lane runs on and reports its own outcome.
                        SourceLog.SessionFailed(_logger, SessionId, $"demand lane: {reason}");
                        break;
                    case CloseKind.Timeout:
                        // The sink stopped reading its demand answers (the transport's write-stall timeout): a peer that
                        // cannot take answers cannot finish either, so the whole session ends, logged once, here.
                        SourceLog.SessionFailed(_logger, SessionId, reason.ToString());
                        Stop(reason);
                        break;
                    default:
                        // The session ended or the sink went away: the bulk lane reports the outcome.
                        break;
                }
            });
        }
    }
}
