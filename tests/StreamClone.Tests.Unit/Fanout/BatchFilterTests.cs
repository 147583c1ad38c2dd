using System.Security.Cryptography;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Unit.Fanout;

/// <summary>
/// Per-child filtering of an encoded batch by the child's inventory: all Data chunks held → Known-only, no payload;
/// some → re-encoded without them; none → the stored batch as it is.
/// </summary>
public sealed class BatchFilterTests
{
    private const int ChunkSize = 4096;
    // 7.5 chunks: the last one is short, so lengths come from the object, not from the chunk size.
    private static readonly ObjectInfo Object = new() { Id = 0, Name = "memory", Kind = ObjectKind.Memory, Size = (7 * ChunkSize) + 2048, ChunkSize = ChunkSize };
    private static readonly ObjectInfo[] Objects = [Object];

    private readonly BatchBufferPool _pool = new();

    /// <summary>Chunk 2 is zero, the rest random: Data at 0,1,3,4,5,6,7.</summary>
    private (ChunkBatchMessage Header, byte[] Payload, byte[] Image, WorkBatch Classified) Encoded()
    {
        var image = RandomNumberGenerator.GetBytes((int)Object.Size);
        image.AsSpan(2 * ChunkSize, ChunkSize).Clear();
        var raw = _pool.Rent(image.Length);
        image.CopyTo(raw.Span);
        var batch = BatchEncoder.Classify(new WorkBatch
        {
            ObjectId = 0,
            FirstIndex = 0,
            Count = 8,
            ChunkSize = ChunkSize,
            Raw = raw,
            Kinds = new ChunkEntryKind[8],
            Hashes = new ChunkHash[8],
        });
        using var encoded = BatchEncoder.Encode(batch, 1, _pool);
        return (encoded.Header, encoded.Payload.Span.ToArray(), image, batch);
    }

    private static ChunkHashSet Holding(WorkBatch batch, params int[] chunks)
    {
        var set = new ChunkHashSet();
        foreach (var i in chunks)
        {
            set.Add(batch.Hashes[i]);
        }
        return set;
    }

    [Fact]
    public void A_child_holding_none_of_the_batch_gets_the_stored_batch_as_it_is()
    {
        var (header, payload, _, batch) = Encoded();
        // Holds something, just nothing of this batch's.
        var other = new ChunkHashSet();
        other.Add(ChunkHash.Compute(RandomNumberGenerator.GetBytes(ChunkSize)));
        foreach (var inventory in new[] { new ChunkHashSet(), other })
        {
            var sent = BatchFilter.ForInventory(header, payload, Object, inventory, 1, _pool, out var reencoded);
            Assert.Same(header, sent);
            Assert.Null(reencoded);
        }
        Assert.Equal(ChunkEntryKind.Data, batch.Kinds[0]);
        Assert.Equal(0, _pool.Outstanding);
    }

    [Fact]
    public void A_child_holding_every_Data_chunk_gets_a_Known_only_batch_without_payload()
    {
        var (header, payload, _, batch) = Encoded();
        var sent = BatchFilter.ForInventory(header, payload, Object, Holding(batch, 0, 1, 3, 4, 5, 6, 7), 1, _pool, out var reencoded);
        using (reencoded)
        {
            Assert.NotNull(reencoded);
            Assert.Equal(0, reencoded.Length);
            Assert.Equal(0, sent.RawLength);
            Assert.Equal(PayloadCodec.None, sent.Codec);
            byte[] expected = [.. Enumerable.Range(0, 8).Select(i => (byte)(i == 2 ? ChunkEntryKind.Zero : ChunkEntryKind.Known))];
            Assert.Equal(expected, sent.Kinds);
            Assert.Equal(header.Hashes, sent.Hashes);
            BatchLayout.Validate(sent, Objects);
        }
        // The stored header is untouched: other children read it too.
        Assert.Equal((byte)ChunkEntryKind.Data, header.Kinds[0]);
        Assert.Equal(0, _pool.Outstanding);
    }

    [Fact]
    public void A_child_holding_some_Data_chunks_gets_the_others_recompressed_in_order()
    {
        var (header, payload, image, batch) = Encoded();
        // Held: 1, 4 and the short last chunk 7; sent: 0, 3, 5, 6.
        var sent = BatchFilter.ForInventory(header, payload, Object, Holding(batch, 1, 4, 7), 1, _pool, out var reencoded);
        using (reencoded)
        {
            Assert.NotNull(reencoded);
            BatchLayout.Validate(sent, Objects);
            byte[] kinds = [(byte)ChunkEntryKind.Data, (byte)ChunkEntryKind.Known, (byte)ChunkEntryKind.Zero, (byte)ChunkEntryKind.Data,
                (byte)ChunkEntryKind.Known, (byte)ChunkEntryKind.Data, (byte)ChunkEntryKind.Data, (byte)ChunkEntryKind.Known];
            Assert.Equal(kinds, sent.Kinds);
            var expected = new[] { 0, 3, 5, 6 }.SelectMany(i => image.AsSpan(i * ChunkSize, ChunkSize).ToArray()).ToArray();
            Assert.Equal(expected.Length, sent.RawLength);
            var decoded = new byte[sent.RawLength];
            BatchCodec.Decompress(sent.Codec, reencoded.Span, decoded);
            Assert.Equal(expected, decoded);
            Assert.Equal((byte)ChunkEntryKind.Data, header.Kinds[1]);
        }
        Assert.Equal(0, _pool.Outstanding);

        // Holding the first chunks only keeps the short last one in the payload.
        var tail = BatchFilter.ForInventory(header, payload, Object, Holding(batch, 0, 1, 3, 4, 5, 6), 1, _pool, out var last);
        using (last)
        {
            Assert.Equal(2048, tail.RawLength);
            var decoded = new byte[tail.RawLength];
            BatchCodec.Decompress(tail.Codec, last!.Span, decoded);
            Assert.Equal(image.AsSpan(7 * ChunkSize).ToArray(), decoded);
        }
        Assert.Equal(0, _pool.Outstanding);
    }
}
