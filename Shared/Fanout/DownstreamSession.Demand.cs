using StreamClone.Shared.Chunking;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

public sealed partial class DownstreamSession
{
    /// <summary>
    /// The demand lane: each request is read (through the server's <see cref="IDemandReader"/>), hashed,
    /// compressed and answered inline, on its own connection, so an answer never waits behind bulk frames in our
    /// pipe or in the kernel. Known entries here come only from the child's inventory, never from the stream's
    /// dedup: a demand answer can overtake the bulk frame that first carries a hash.
    /// </summary>
    internal async Task RunDemandAsync(FrameConnection demand)
    {
        _demandLane = demand;
        var ct = _stop.Token;
        try
        {
            var objects = (await _server.WaitForStreamAsync(ct)).Offer.Objects;
            var reader = _server.DemandReader;
            await demand.ReceiveAsync(async frame =>
            {
                if (frame.Type != FrameType.DemandRequest)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"demand lane: unexpected {frame.Type}");
                }
                var request = frame.DecodeHeader<DemandRequestMessage>();
                // Checked here once against the offer; the reader checks again before touching memory.
                // Requests are answered one at a time per lane, so a child holds at most one answer's
                // buffers (MaxDemandBytes raw plus its compressed copy) however many it sends.
                var obj = DemandLayout.Validate(request, objects);
                Stats.AddDemand();
                StreamCloneMetrics.RecordDemandRequest(Role);
                var batch = await reader.ReadAsync(obj, request.FirstIndex, request.Count, request.RequestId, _options.Buffers, ct);
                try
                {
                    BatchEncoder.Classify(batch);
                    for (var i = 0; i < batch.Count; i++)
                    {
                        if (!request.ForceData && batch.Kinds[i] == ChunkEntryKind.Data && _inventory.Contains(batch.Hashes[i]))
                        {
                            batch.Kinds[i] = ChunkEntryKind.Known;
                        }
                    }
                    StreamCloneMetrics.RecordChunkKinds(Role, Lane.Demand, batch.Kinds.AsSpan(0, batch.Count));
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
                FanoutLog.DemandServed(_logger, request.RequestId, request.ObjectId, request.FirstIndex, request.Count);
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
                        // The child broke the protocol on this lane, or we could not read what it asked for: told (Error
                        // frame) and logged here; the bulk lane runs on and reports its own outcome.
                        FanoutLog.SessionFailed(_logger, SessionId, $"demand lane: {reason}");
                        break;
                    case CloseKind.Timeout:
                        // The child stopped reading its demand answers (the transport's write-stall timeout): a peer that
                        // cannot take answers cannot finish either, so the whole session ends, logged once, here.
                        FanoutLog.SessionFailed(_logger, SessionId, reason.ToString());
                        Stop(reason);
                        break;
                    default:
                        // The session ended or the child went away: the bulk lane reports the outcome.
                        break;
                }
            });
        }
    }
}
