using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Sink.Session;

public sealed partial class SinkSession
{
    /// <summary>
    /// Places a verified batch in the store. Known entries are copied locally from where the store
    /// holds that hash; one the store cannot produce (missing, or its bytes no longer match) is
    /// fetched again over the demand lane with ForceData, never trusted.
    /// </summary>
    private void Store(VerifiedBatch batch, bool demand)
    {
        try
        {
            var header = batch.Header;
            var obj = batch.Object;
            int data = 0, zero = 0, known = 0, at = 0, h = 0;
            long covered = 0;
            for (var i = 0; i < header.Kinds.Length; i++)
            {
                var index = header.FirstIndex + i;
                var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index);
                covered += length;
                var kind = (ChunkEntryKind)header.Kinds[i];
                if (kind == ChunkEntryKind.Zero)
                {
                    zero++;
                    if (!Snapshot.IsPresent(obj.Id, index))
                    {
                        Snapshot.PutZero(obj.Id, index);
                    }
                    continue;
                }
                var hash = ChunkHash.Read(header.Hashes.AsSpan(h++ * ChunkHash.Size));
                if (kind == ChunkEntryKind.Data)
                {
                    data++;
                    if (!Snapshot.IsPresent(obj.Id, index))
                    {
                        Snapshot.PutData(obj.Id, index, hash, batch.Data.AsSpan(at, length));
                    }
                    at += length;
                }
                else
                {
                    known++;
                    if (!Snapshot.IsPresent(obj.Id, index) && !Snapshot.TryPutKnown(obj.Id, index, hash))
                    {
                        SinkLog.KnownChunkRefetch(_logger, hash.ToShortString(), obj.Id, index);
                        RequestRefetch(obj.Id, index);
                    }
                }
            }
            Stats.AddBatch(header.Kinds.Length, data, zero, known, covered, batch.PayloadLength, demand);
        }
        finally
        {
            batch.Return();
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
