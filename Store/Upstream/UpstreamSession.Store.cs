using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Store.Upstream;

public sealed partial class UpstreamSession
{
    /// <summary>
    /// Places a verified batch in the store. Known entries are copied locally from where the store
    /// holds that hash; one the store cannot produce (missing, or its bytes no longer match) is
    /// fetched again over the demand lane with ForceData, never trusted.
    /// </summary>
    /// <remarks>Takes ownership of <paramref name="batch"/> and disposes it.</remarks>
    private void Store(VerifiedBatch batch, bool demand)
    {
        try
        {
            var header = batch.Header;
            var obj = batch.Object;
            int data = 0, zero = 0, known = 0, at = 0, h = 0;
            long covered = 0;
            // Consecutive new Data chunks lie back to back in batch.Data: the store takes each such run in one write.
            Span<ChunkHash> run = stackalloc ChunkHash[header.Kinds.Length];
            int runLength = 0, runAt = 0;
            long runFirst = 0;
            for (var i = 0; i < header.Kinds.Length; i++)
            {
                var index = header.FirstIndex + i;
                var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index);
                covered += length;
                var kind = (ChunkEntryKind)header.Kinds[i];
                var present = Snapshot.IsPresent(obj.Id, index);
                if (kind != ChunkEntryKind.Data || present)
                {
                    FlushRun(obj.Id, runFirst, run[..runLength], batch.DataSpan.Slice(runAt, at - runAt));
                    runLength = 0;
                }
                if (kind == ChunkEntryKind.Zero)
                {
                    zero++;
                    if (!present)
                    {
                        Snapshot.PutZero(obj.Id, index);
                    }
                    continue;
                }
                var hash = ChunkHash.Read(header.Hashes.AsSpan(h++ * ChunkHash.Size));
                if (kind == ChunkEntryKind.Data)
                {
                    data++;
                    if (!present)
                    {
                        if (runLength == 0)
                        {
                            runFirst = index;
                            runAt = at;
                        }
                        run[runLength++] = hash;
                    }
                    at += length;
                }
                else
                {
                    known++;
                    if (!present && !Snapshot.TryPutKnown(obj.Id, index, hash))
                    {
                        UpstreamLog.KnownChunkRefetch(_logger, hash.ToShortString(), obj.Id, index);
                        RequestRefetch(obj.Id, index);
                    }
                }
            }
            FlushRun(obj.Id, runFirst, run[..runLength], batch.DataSpan.Slice(runAt, at - runAt));
            Stats.AddBatch(header.Kinds.Length, data, zero, known, covered, batch.PayloadLength, demand);
            StreamCloneMetrics.RecordChunks(MetricRole.Sink, demand ? Lane.Demand : Lane.Bulk, data, zero, known);
        }
        finally
        {
            batch.Dispose();
        }
    }

    private void FlushRun(int objectId, long firstIndex, ReadOnlySpan<ChunkHash> hashes, ReadOnlySpan<byte> data)
    {
        if (hashes.Length > 0)
        {
            Snapshot.PutDataRun(objectId, firstIndex, hashes, data);
        }
    }

    private async Task<SnapshotManifest> CompleteAsync(SnapshotCompleteMessage completion, CancellationToken ct)
    {
        if (completion.RootHashes.Count != Snapshot.Objects.Count || completion.RootHashes.Any(r => r is null || r.Length != ChunkHash.Size))
        {
            StreamClone.Shared.ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader,
                $"completion carries {completion.RootHashes.Count} root hashes for {Snapshot.Objects.Count} objects");
        }
        // Chunks re-fetched after a failed local copy may still be in flight on the demand lane.
        await WaitForRefetchesAsync(ct);
        return await Snapshot.CompleteAsync(completion.RootHashes, ct);
    }
}
