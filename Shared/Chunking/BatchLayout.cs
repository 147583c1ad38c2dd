using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Chunking;

/// <summary>
/// Checks a batch header against the object it claims to fill, before any of its numbers sizes a
/// buffer or places a byte. Every field that came off the wire is checked here once.
/// </summary>
public static class BatchLayout
{
    /// <summary>The most chunks one batch may carry.</summary>
    public const int MaxChunksPerBatch = WireLimits.MaxBatchChunks;

    /// <summary>Returns the object the batch belongs to, or throws a protocol violation naming the bad field.</summary>
    public static ObjectInfo Validate(ChunkBatchMessage batch, IReadOnlyList<ObjectInfo> objects)
    {
        if ((uint)batch.ObjectId >= (uint)objects.Count)
        {
            return ThrowHelper.ThrowProtocol<ObjectInfo>(ProtocolError.BadChunkPlacement, $"batch for unknown object {batch.ObjectId}");
        }
        var obj = objects[batch.ObjectId];
        var count = batch.Kinds.Length;
        var chunkCount = ChunkMath.ChunkCount(obj.Size, obj.ChunkSize);
        if (count > MaxChunksPerBatch || !WireLimits.IsValidRange(batch.FirstIndex, count, chunkCount))
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                $"batch places chunks {batch.FirstIndex}+{count} in {obj.Name}, which has {chunkCount}");
        }
        var nonZero = 0;
        long raw = 0;
        for (var i = 0; i < count; i++)
        {
            switch ((ChunkEntryKind)batch.Kinds[i])
            {
                case ChunkEntryKind.Zero:
                    break;
                case ChunkEntryKind.Known:
                    nonZero++;
                    break;
                case ChunkEntryKind.Data:
                    nonZero++;
                    raw += ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, batch.FirstIndex + i);
                    break;
                default:
                    ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, $"unknown chunk entry kind {batch.Kinds[i]} at {batch.FirstIndex + i}");
                    break;
            }
        }
        if (batch.Hashes.Length != nonZero * ChunkHash.Size)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader,
                $"batch has {nonZero} non-zero entries but {batch.Hashes.Length} hash bytes");
        }
        if (batch.RawLength != raw || raw > WireLimits.MaxBatchRawBytes)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader,
                $"batch says {batch.RawLength} raw bytes, its Data entries add up to {raw}");
        }
        return obj;
    }
}
