using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Relay;

public sealed partial class RelayNode
{
    /// <summary>
    /// A child's demand: served from the cache when every chunk is there (a hit), otherwise the missing ones are asked
    /// upstream through the pulling session (a miss: concurrent requests for a chunk share one request there, so
    /// demand climbs the chain to the first node that holds it) and then read. Cached chunks whose hash the log or
    /// the journal named are re-hashed on the way out; one that fails is dropped and fetched again, never served.
    /// </summary>
    private sealed class CacheDemandReader(RelayNode node) : IDemandReader
    {
        public ValueTask<WorkBatch> ReadAsync(ObjectInfo obj, long firstIndex, int count, long requestId, IBatchBufferSource buffers, CancellationToken ct) =>
            node.ReadDemandAsync(obj, firstIndex, count, requestId, buffers, ct);
    }

    private async ValueTask<WorkBatch> ReadDemandAsync(ObjectInfo obj, long firstIndex, int count, long requestId, IBatchBufferSource buffers, CancellationToken ct)
    {
        var snapshot = await SnapshotAsync(ct);
        var chunkCount = ChunkMath.ChunkCount(obj.Size, obj.ChunkSize);
        if ((uint)obj.Id >= (uint)snapshot.Objects.Count || count < 1 || !WireLimits.IsValidRange(firstIndex, count, chunkCount))
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"chunks {firstIndex}+{count} of an object of {chunkCount} chunks");
        }
        var hit = true;
        for (var i = 0; i < count && hit; i++)
        {
            hit = snapshot.IsPresent(obj.Id, firstIndex + i);
        }
        StreamCloneMetrics.RecordCacheLookups(hit ? 1 : 0, hit ? 0 : 1);
        if (!hit)
        {
            await _client.EnsurePresentAsync(obj.Id, firstIndex, count, ct);
        }
        RelayLog.Demand(_logger, obj.Id, firstIndex, count, hit ? "cache hit" : "fetched upstream");
        var raw = buffers.Rent((int)BatchFilter.InputBytes(obj, firstIndex, count));
        try
        {
            for (var i = 0; i < count; i++)
            {
                var index = firstIndex + i;
                var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index);
                var destination = raw.Memory.Slice(i * obj.ChunkSize, length);
                if (TryGetHash(obj.Id, index, out var hash))
                {
                    await ReadCachedChunkAsync(obj.Id, index, hash, destination, ct);
                }
                else
                {
                    // Not named by the log yet: it came over our demand lane moments ago, verified against its hash there.
                    snapshot.Read(obj.Id, index * obj.ChunkSize, destination.Span);
                }
            }
        }
        catch
        {
            raw.Dispose();
            throw;
        }
        return WorkBatch.Of(obj, firstIndex, count, raw, requestId);
    }

    /// <summary>
    /// One chunk with a known hash from the cache into <paramref name="destination"/>: present and re-hashing to it,
    /// or copied from another cached snapshot holding that hash, or fetched upstream (a chunk that failed its hash was
    /// dropped by the read, so it is fetched again). Bytes that fail are never returned.
    /// </summary>
    private async ValueTask ReadCachedChunkAsync(int objectId, long index, ChunkHash hash, Memory<byte> destination, CancellationToken ct)
    {
        var snapshot = await SnapshotAsync(ct);
        for (var attempt = 0; attempt < 2; attempt++)
        {
            if (!snapshot.IsPresent(objectId, index))
            {
                // Verified copy from wherever the cache holds that hash (false: not held, or its bytes no longer match).
                snapshot.TryPutKnown(objectId, index, hash);
            }
            if (snapshot.IsPresent(objectId, index)
                && snapshot.ReadVerified(objectId, index, new ReadOnlySpan<ChunkHash>(in hash), destination.Span).Chunks == 1)
            {
                return;
            }
            if (attempt == 0 && !snapshot.IsPresent(objectId, index))
            {
                RelayLog.CachedChunkRefetched(_logger, objectId, index);
            }
            await _client.EnsurePresentAsync(objectId, index, 1, ct);
        }
        throw new InvalidDataException($"chunk {objectId}:{index} does not match its hash {hash.ToShortString()} even after fetching it again from upstream");
    }
}
