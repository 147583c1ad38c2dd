using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Source.Pipeline;

/// <summary>Reading a batch's raw chunks from an <see cref="Inputs.ISnapshotInput"/> (bulk graph and demand reader).</summary>
internal static class InputBatchReader
{
    /// <summary>
    /// Reads [firstIndex, firstIndex+count) of an object into a rented batch buffer. The range is
    /// checked here again, whoever called: an index from the wire multiplied by the chunk size must
    /// never wrap into an offset the input would read. The returned batch owns the buffer, rented
    /// from <paramref name="buffers"/>.
    /// </summary>
    public static async ValueTask<WorkBatch> ReadAsync(Inputs.ISnapshotInput input, ObjectInfo obj, long firstIndex, int count, long requestId, IBatchBufferSource buffers, CancellationToken ct)
    {
        var chunkCount = ChunkMath.ChunkCount(obj.Size, obj.ChunkSize);
        if (count > WireLimits.MaxBatchChunks || !WireLimits.IsValidRange(firstIndex, count, chunkCount)
            || (long)count * obj.ChunkSize > WireLimits.MaxBatchRawBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(firstIndex), firstIndex,
                $"chunks {firstIndex}+{count} of {obj.Name} ({chunkCount} chunks of {obj.ChunkSize} bytes; at most {WireLimits.MaxBatchChunks} chunks, {WireLimits.MaxBatchRawBytes} bytes per batch)");
        }
        // In range: firstIndex < chunkCount, so the product is at most the object's size.
        var offset = checked(firstIndex * obj.ChunkSize);
        var length = (int)Math.Min((long)count * obj.ChunkSize, obj.Size - offset);
        var raw = buffers.Rent(length);
        try
        {
            var read = await input.ReadAsync(obj.Id, offset, raw.Memory, ct);
            if (read != length)
            {
                throw new IOException($"object {obj.Name}: read {read} bytes at {offset}, expected {length} (did the image shrink?)");
            }
        }
        catch
        {
            raw.Dispose();
            throw;
        }
        return WorkBatch.Of(obj, firstIndex, count, raw, requestId);
    }
}
