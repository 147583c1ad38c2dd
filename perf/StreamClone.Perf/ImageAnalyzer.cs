using System.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Perf;

/// <summary>
/// Estimates what a snapshot of an image costs on the wire, with the protocol's own pieces: 4 KiB
/// chunks, <see cref="ZeroDetector"/>, BLAKE3 <see cref="ChunkHash"/> dedup (against an inventory
/// and earlier chunks of the stream), Data entries of a batch compressed together by
/// <see cref="BatchCodec"/>, and each batch framed by <see cref="FrameWriter"/> so headers (kinds
/// and hashes) count too. The real sender's batching policy may differ; this is the reference the
/// generator's mix is tuned against and what the mutation tests compare.
/// </summary>
public static class ImageAnalyzer
{
    public const int ChunkSize = 4096;

    /// <param name="path">The image.</param>
    /// <param name="inventory">Hashes the receiver already holds (a previous snapshot's <see cref="ImageAnalysis.Hashes"/>), or null.</param>
    /// <param name="batchChunks">Consecutive chunks per ChunkBatch frame: 16 = 64 KiB raw.</param>
    /// <param name="level">zstd level (1 matches <c>zstd -1</c>).</param>
    /// <param name="ct">Cancels between batches.</param>
    public static async Task<ImageAnalysis> AnalyzeAsync(string path, IReadOnlySet<ChunkHash>? inventory = null,
        int batchChunks = 16, int level = 1, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchChunks, 1);
        var seen = new HashSet<ChunkHash>();
        long chunks = 0, zero = 0, duplicate = 0, known = 0, data = 0, compressed = 0;
        var frames = new ArrayBufferWriter<byte>(batchChunks * ChunkSize + 4096);
        var writer = new FrameWriter();
        long wire = 0;

        var batch = new byte[batchChunks * ChunkSize];
        var raw = new byte[batchChunks * ChunkSize];
        var packed = new byte[BatchCodec.MaxCompressedLength(raw.Length)];
        var kinds = new byte[batchChunks];
        var hashes = new byte[batchChunks * ChunkHash.Size];

        await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous | FileOptions.SequentialScan);
        var size = file.Length;
        for (long firstIndex = 0; ; firstIndex += batchChunks)
        {
            ct.ThrowIfCancellationRequested();
            var length = await file.ReadAtLeastAsync(batch, batch.Length, throwOnEndOfStream: false, ct);
            if (length == 0)
            {
                break;
            }
            var count = (length + ChunkSize - 1) / ChunkSize;
            int rawLength = 0, hashLength = 0;
            for (var i = 0; i < count; i++)
            {
                var chunk = batch.AsSpan(i * ChunkSize, Math.Min(ChunkSize, length - (i * ChunkSize)));
                chunks++;
                if (ZeroDetector.IsAllZero(chunk))
                {
                    zero++;
                    kinds[i] = (byte)ChunkEntryKind.Zero;
                    continue;
                }
                var hash = ChunkHash.Compute(chunk);
                hash.Write(hashes.AsSpan(hashLength));
                hashLength += ChunkHash.Size;
                if (inventory is not null && inventory.Contains(hash))
                {
                    known++;
                    seen.Add(hash);
                    kinds[i] = (byte)ChunkEntryKind.Known;
                }
                else if (!seen.Add(hash))
                {
                    duplicate++;
                    kinds[i] = (byte)ChunkEntryKind.Known;
                }
                else
                {
                    data++;
                    kinds[i] = (byte)ChunkEntryKind.Data;
                    chunk.CopyTo(raw.AsSpan(rawLength));
                    rawLength += chunk.Length;
                }
            }

            var (codec, packedLength) = rawLength == 0 ? (PayloadCodec.None, 0) : BatchCodec.Compress(raw.AsSpan(0, rawLength), packed, level);
            compressed += packedLength;
            var header = new ChunkBatchMessage
            {
                ObjectId = 0,
                FirstIndex = firstIndex,
                Kinds = kinds[..count],
                Hashes = hashes[..hashLength],
                Codec = codec,
                RawLength = rawLength,
            };
            frames.ResetWrittenCount();
            wire += writer.Write(frames, FrameType.ChunkBatch, header, packed.AsSpan(0, packedLength));
        }

        return new ImageAnalysis
        {
            Size = size,
            Chunks = chunks,
            ZeroChunks = zero,
            DuplicateChunks = duplicate,
            KnownChunks = known,
            DataChunks = data,
            CompressedDataBytes = compressed,
            WireBytes = wire,
            Hashes = seen,
        };
    }
}
