using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Chunking;

/// <summary>
/// The per-batch work, shared by the bulk graph and the demand responder so both produce the same
/// frames: classify (zero test, content hash), then encode (concatenate Data chunks, compress).
/// Dedup sits between the two in the bulk graph only.
/// </summary>
public static class BatchEncoder
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

    /// <summary>
    /// Builds the frame: the Data chunks, in index order, compressed as one zstd frame straight from
    /// the raw buffer (each run of consecutive Data chunks is one input span; see
    /// <see cref="BatchCodec.CompressRuns"/>). Takes ownership of the batch's raw buffer and disposes
    /// it; the returned batch owns its payload, rented from <paramref name="buffers"/>.
    /// </summary>
    public static EncodedBatch Encode(WorkBatch batch, int compressionLevel, IBatchBufferSource buffers)
    {
        using var raw = batch.Raw;
        var kinds = new byte[batch.Count];
        var nonZero = 0;
        var rawData = 0;
        var runCount = 0;
        var inRun = false;
        for (var i = 0; i < batch.Count; i++)
        {
            kinds[i] = (byte)batch.Kinds[i];
            if (batch.Kinds[i] != ChunkEntryKind.Zero)
            {
                nonZero++;
            }
            var data = batch.Kinds[i] == ChunkEntryKind.Data;
            if (data)
            {
                rawData += batch.Chunk(i).Length;
                runCount += inRun ? 0 : 1;
            }
            inRun = data;
        }

        var hashes = new byte[nonZero * ChunkHash.Size];
        // At most MaxBatchChunks/2 runs (8 bytes each): 4 KiB of stack at the limit.
        Span<Range> runs = stackalloc Range[runCount];
        int zero = 0, known = 0, h = 0, r = 0;
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
                    var start = i * batch.ChunkSize;
                    var end = start + batch.Chunk(i).Length;
                    if (i > 0 && batch.Kinds[i - 1] == ChunkEntryKind.Data)
                    {
                        runs[r - 1] = new Range(runs[r - 1].Start, end);
                    }
                    else
                    {
                        runs[r++] = new Range(start, end);
                    }
                    break;
            }
            batch.Hashes[i].Write(hashes.AsSpan(h * ChunkHash.Size));
            h++;
        }

        var payload = buffers.Rent(rawData == 0 ? 0 : BatchCodec.MaxCompressedLength(rawData));
        try
        {
            var (codec, length) = rawData == 0
                ? (PayloadCodec.None, 0)
                : BatchCodec.CompressRuns(raw.Span, runs, payload.WholeSpan, compressionLevel);
            payload.SetLength(length);
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
                ChunkCount = batch.Count,
                InputBytes = batch.RawLength,
                ZeroChunks = zero,
                KnownChunks = known,
            };
        }
        catch
        {
            payload.Dispose();
            throw;
        }
    }
}
