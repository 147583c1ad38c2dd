using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Source.Pipeline;

/// <summary>
/// The per-batch work, shared by the bulk graph and the demand responder so both produce the same
/// frames: classify (zero test, content hash), then encode (concatenate Data chunks, compress).
/// Dedup sits between the two in the bulk graph only.
/// </summary>
internal static class BatchEncoder
{
    /// <summary>Zero test and BLAKE3 per chunk. Pure CPU, safe to run in parallel across batches.</summary>
    public static WorkBatch Classify(WorkBatch batch)
    {
        for (var i = 0; i < batch.Count; i++)
        {
            var chunk = batch.Chunk(i);
            if (ZeroDetector.IsAllZero(chunk))
            {
                batch.Kinds[i] = ChunkEntryKind.Zero;
                batch.Hashes[i] = ChunkHash.ZeroMark;
            }
            else
            {
                batch.Kinds[i] = ChunkEntryKind.Data;
                batch.Hashes[i] = ChunkHash.Compute(chunk);
            }
        }
        return batch;
    }

    /// <summary>Builds the frame: Data chunks concatenated in index order and compressed as one block. Returns the raw buffer to the pool.</summary>
    public static EncodedBatch Encode(WorkBatch batch, int compressionLevel)
    {
        var kinds = new byte[batch.Count];
        var nonZero = 0;
        var rawData = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            kinds[i] = (byte)batch.Kinds[i];
            if (batch.Kinds[i] != ChunkEntryKind.Zero)
            {
                nonZero++;
            }
            if (batch.Kinds[i] == ChunkEntryKind.Data)
            {
                rawData += batch.Chunk(i).Length;
            }
        }

        var hashes = new byte[nonZero * ChunkHash.Size];
        var staging = rawData == 0 ? [] : BatchBuffers.Pool.Rent(rawData);
        int zero = 0, known = 0, h = 0, at = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            switch (batch.Kinds[i])
            {
                case ChunkEntryKind.Zero:
                    zero++;
                    continue;
                case ChunkEntryKind.Known:
                    known++;
                    break;
                case ChunkEntryKind.Data:
                    var chunk = batch.Chunk(i);
                    chunk.CopyTo(staging.AsSpan(at));
                    at += chunk.Length;
                    break;
            }
            batch.Hashes[i].Write(hashes.AsSpan(h * ChunkHash.Size));
            h++;
        }
        batch.ReturnRaw();

        var payload = BatchBuffers.Pool.Rent(Math.Max(1, BatchCodec.MaxCompressedLength(rawData)));
        var (codec, length) = rawData == 0
            ? (PayloadCodec.None, 0)
            : BatchCodec.Compress(staging.AsSpan(0, rawData), payload, compressionLevel);
        if (rawData > 0)
        {
            BatchBuffers.Pool.Return(staging);
        }

        return new EncodedBatch
        {
            Header = new ChunkBatchMessage
            {
                ObjectId = batch.ObjectId,
                FirstIndex = batch.FirstIndex,
                Kinds = kinds,
                Hashes = hashes,
                Codec = codec,
                RawLength = rawData,
                RequestId = batch.RequestId,
            },
            Payload = payload,
            PayloadLength = length,
            ChunkCount = batch.Count,
            InputBytes = batch.RawLength,
            ZeroChunks = zero,
            KnownChunks = known,
        };
    }

    /// <summary>
    /// Reads [firstIndex, firstIndex+count) of an object into a rented batch buffer. The range is
    /// checked here again, whoever called: an index from the wire multiplied by the chunk size must
    /// never wrap into an offset the input would read.
    /// </summary>
    public static async ValueTask<WorkBatch> ReadAsync(Inputs.ISnapshotInput input, ObjectInfo obj, long firstIndex, int count, long requestId, CancellationToken ct)
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
        var raw = BatchBuffers.Pool.Rent(Math.Max(1, length));
        try
        {
            var read = await input.ReadAsync(obj.Id, offset, raw.AsMemory(0, length), ct);
            if (read != length)
            {
                throw new IOException($"object {obj.Name}: read {read} bytes at {offset}, expected {length} (did the image shrink?)");
            }
        }
        catch
        {
            BatchBuffers.Pool.Return(raw);
            throw;
        }
        return new WorkBatch
        {
            ObjectId = obj.Id,
            FirstIndex = firstIndex,
            Count = count,
            ChunkSize = obj.ChunkSize,
            Raw = raw,
            RawLength = length,
            RequestId = requestId,
            Kinds = new ChunkEntryKind[count],
            Hashes = new ChunkHash[count],
        };
    }
}
