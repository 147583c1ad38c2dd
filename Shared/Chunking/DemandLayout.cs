using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Chunking;

/// <summary>
/// Checks a demand request against the objects on offer before any of its numbers reaches a read:
/// the one place a source (or a relay serving from its store) decides whether a peer's request is
/// answerable. A pure function of its arguments, so a fuzzer can drive it directly.
/// </summary>
public static class DemandLayout
{
    /// <summary>Returns the object the request names, or throws a <see cref="ProtocolViolationException"/> (BadChunkPlacement) naming the bad field.</summary>
    public static ObjectInfo Validate(DemandRequestMessage request, IReadOnlyList<ObjectInfo> objects)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(objects);
        if ((uint)request.ObjectId >= (uint)objects.Count)
        {
            return ThrowHelper.ThrowProtocol<ObjectInfo>(ProtocolError.BadChunkPlacement,
                $"demand for unknown object {request.ObjectId} (the snapshot has {objects.Count})");
        }
        var obj = objects[request.ObjectId];
        var chunkCount = ChunkMath.ChunkCount(obj.Size, obj.ChunkSize);
        // The range check never adds FirstIndex and Count: FirstIndex = 2^63-16, Count = 16 once wrapped to a negative offset.
        if (!WireLimits.IsValidRange(request.FirstIndex, request.Count, chunkCount))
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                $"demand for chunks {request.FirstIndex}+{request.Count} of {obj.Name}, which has {chunkCount}");
        }
        var max = WireLimits.MaxDemandChunksFor(obj.ChunkSize);
        if (request.Count > max)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                $"demand for {request.Count} chunks of {obj.ChunkSize} bytes in {obj.Name}; one request may name at most {max} ({WireLimits.MaxDemandBytes} bytes)");
        }
        return obj;
    }
}
