using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// The per-child part of serving an encoded stream: what a child already holds (its inventory) is not sent again.
/// The stream's batch is encoded once for everyone; only a child that holds some of a batch's Data chunks
/// costs a re-encode, and one that holds all of them costs nothing (Known entries, no payload).
/// </summary>
public static class BatchFilter
{
    /// <summary>
    /// The batch <paramref name="header"/> (validated against <paramref name="obj"/>) as
    /// <paramref name="inventory"/>'s holder should get it. Returns the header to send: the stored one itself when
    /// nothing changes (<paramref name="reencoded"/> null: send the stored payload), else a copy whose held Data
    /// entries are Known; then <paramref name="reencoded"/> is the new payload (rented from
    /// <paramref name="buffers"/>, the caller disposes it), empty when every Data chunk was held.
    /// </summary>
    public static ChunkBatchMessage ForInventory(ChunkBatchMessage header, ReadOnlySpan<byte> payload, ObjectInfo obj, ChunkHashSet inventory,
        int compressionLevel, IBatchBufferSource buffers, out BatchBuffer? reencoded)
    {
        reencoded = null;
        if (inventory.Count == 0)
        {
            return header;
        }
        var count = header.Kinds.Length;
        // At most MaxBatchChunks (1 byte each) on the stack.
        Span<bool> heldData = stackalloc bool[count];
        int data = 0, held = 0, h = 0;
        for (var i = 0; i < count; i++)
        {
            var kind = (ChunkEntryKind)header.Kinds[i];
            if (kind == ChunkEntryKind.Zero)
            {
                continue;
            }
            if (kind == ChunkEntryKind.Data)
            {
                data++;
                if (inventory.Contains(ChunkHash.Read(header.Hashes.AsSpan(h * ChunkHash.Size, ChunkHash.Size))))
                {
                    heldData[i] = true;
                    held++;
                }
            }
            h++;
        }
        if (held == 0)
        {
            return header;
        }
        var kinds = (byte[])header.Kinds.Clone();
        for (var i = 0; i < count; i++)
        {
            if (heldData[i])
            {
                kinds[i] = (byte)ChunkEntryKind.Known;
            }
        }
        var filtered = new ChunkBatchMessage
        {
            ObjectId = header.ObjectId,
            FirstIndex = header.FirstIndex,
            Kinds = kinds,
            Hashes = header.Hashes,
            Codec = PayloadCodec.None,
            RawLength = 0,
            RequestId = header.RequestId,
            Sequence = header.Sequence,
        };
        if (held == data)
        {
            reencoded = buffers.Rent(0);
            return filtered;
        }

        // Some held: the Data chunks lie back to back in the decompressed payload; keep the runs not held.
        using var raw = buffers.Rent(header.RawLength);
        BatchCodec.Decompress(header.Codec, payload, raw.Span);
        Span<Range> runs = stackalloc Range[(count + 1) / 2];
        int runCount = 0, at = 0, kept = 0;
        var previousKept = false;
        for (var i = 0; i < count; i++)
        {
            if ((ChunkEntryKind)header.Kinds[i] != ChunkEntryKind.Data)
            {
                // Not in the payload: the Data chunks on either side are adjacent there.
                continue;
            }
            var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, header.FirstIndex + i);
            if (!heldData[i])
            {
                if (previousKept)
                {
                    runs[runCount - 1] = new Range(runs[runCount - 1].Start, at + length);
                }
                else
                {
                    runs[runCount++] = new Range(at, at + length);
                }
                kept += length;
            }
            previousKept = !heldData[i];
            at += length;
        }
        var output = buffers.Rent(BatchCodec.MaxCompressedLength(kept));
        try
        {
            var (codec, written) = BatchCodec.CompressRuns(raw.Span, runs[..runCount], output.WholeSpan, compressionLevel);
            output.SetLength(written);
            filtered.Codec = codec;
            filtered.RawLength = kept;
        }
        catch
        {
            output.Dispose();
            throw;
        }
        reencoded = output;
        return filtered;
    }

    /// <summary>Bytes of the object covered by chunks [<paramref name="firstIndex"/>, +<paramref name="count"/>) (a validated range).</summary>
    public static long InputBytes(ObjectInfo obj, long firstIndex, int count)
    {
        var offset = firstIndex * obj.ChunkSize;
        return Math.Min((long)count * obj.ChunkSize, obj.Size - offset);
    }
}
