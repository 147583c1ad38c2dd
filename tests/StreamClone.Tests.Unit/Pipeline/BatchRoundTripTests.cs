using CsCheck;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Unit.Pipeline;

public class BatchRoundTripTests
{
    private static readonly ObjectInfo Obj = new() { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = 10 * 4096 + 100, ChunkSize = 4096 };

    private static WorkBatch Batch(byte[] image, long first, int count)
    {
        var offset = first * Obj.ChunkSize;
        var length = (int)Math.Min((long)count * Obj.ChunkSize, Obj.Size - offset);
        var raw = BatchBufferPool.Shared.Rent(length);
        image.AsSpan((int)offset, length).CopyTo(raw.Span);
        return new WorkBatch
        {
            ObjectId = 0,
            FirstIndex = first,
            Count = count,
            ChunkSize = Obj.ChunkSize,
            Raw = raw,
            Kinds = new ChunkEntryKind[count],
            Hashes = new ChunkHash[count],
        };
    }

    /// <summary>Encodes, then copies the payload as the sink's frame loop does (a receive buffer of its own).</summary>
    private static (ReceivedBatch Received, ChunkBatchMessage Header) Encode(byte[] image, long first, int count, int level)
    {
        using var encoded = BatchEncoder.Encode(BatchEncoder.Classify(Batch(image, first, count)), level, BatchBufferPool.Shared);
        var payload = BatchBufferPool.Shared.Rent(encoded.PayloadLength);
        encoded.PayloadMemory.Span.CopyTo(payload.Span);
        return (new ReceivedBatch { Header = encoded.Header, Payload = payload }, encoded.Header);
    }

    private static readonly Gen<byte[]> Images =
        Gen.Int[0, 3].Array[11].SelectMany(kinds => Gen.Byte.Array[4096].Array[11].Select(randoms =>
        {
            // Per chunk: 0 zero, 1 random, 2 repeat of chunk 0, 3 text-like; the object ends in a short chunk.
            var image = new byte[Obj.Size];
            for (var i = 0; i < 11; i++)
            {
                var chunk = image.AsSpan(i * 4096, (int)Math.Min(4096, Obj.Size - (i * 4096)));
                switch (kinds[i])
                {
                    case 1: randoms[i].AsSpan(0, chunk.Length).CopyTo(chunk); break;
                    case 2: image.AsSpan(0, chunk.Length).CopyTo(chunk); break;
                    case 3: chunk.Fill((byte)('a' + i)); break;
                }
            }
            return image;
        }));

    [Fact]
    public void Any_batch_survives_classify_encode_verify_with_its_bytes_and_hashes()
    {
        Images.Sample(image =>
        {
            foreach (var level in new[] { 0, 1, 3 })
            {
                var (received, header) = Encode(image, 0, 11, level);
                using var verified = BatchVerifier.Verify(received, [Obj], BatchBufferPool.Shared);
                var at = 0;
                for (var i = 0; i < 11; i++)
                {
                    var chunk = image.AsSpan(i * 4096, (int)Math.Min(4096, Obj.Size - (i * 4096)));
                    var kind = (ChunkEntryKind)header.Kinds[i];
                    Assert.Equal(ZeroDetector.IsAllZero(chunk) ? ChunkEntryKind.Zero : ChunkEntryKind.Data, kind);
                    if (kind == ChunkEntryKind.Data)
                    {
                        Assert.True(verified.DataSpan.Slice(at, chunk.Length).SequenceEqual(chunk));
                        at += chunk.Length;
                    }
                }
                Assert.Equal(header.RawLength, at);
            }
        }, iter: 50);
    }

    [Fact]
    public void A_payload_that_does_not_match_its_hash_is_refused()
    {
        var image = new byte[Obj.Size];
        Random.Shared.NextBytes(image);
        var (received, _) = Encode(image, 0, 4, level: 0);
        received.Payload!.Span[5000] ^= 1;
        var error = Assert.Throws<ProtocolViolationException>(() => BatchVerifier.Verify(received, [Obj], BatchBufferPool.Shared));
        Assert.Equal(ProtocolError.HashMismatch, error.Code);
    }

    [Fact]
    public void A_compressed_payload_cut_short_is_refused()
    {
        var image = new byte[Obj.Size];
        image.AsSpan().Fill(7);
        var (received, header) = Encode(image, 0, 4, level: 3);
        Assert.Equal(PayloadCodec.Zstd, header.Codec);
        received.Payload!.SetLength(received.PayloadLength - 3);
        var error = Assert.Throws<ProtocolViolationException>(() => BatchVerifier.Verify(received, [Obj], BatchBufferPool.Shared));
        Assert.Equal(ProtocolError.DecompressionFailed, error.Code);
    }

    [Theory]
    [InlineData(5, 0, 1, 32, 4096, ProtocolError.BadChunkPlacement)]     // unknown object
    [InlineData(0, 10, 2, 64, 8192, ProtocolError.BadChunkPlacement)]    // runs past the object's end
    [InlineData(0, -1, 1, 32, 4096, ProtocolError.BadChunkPlacement)]    // negative index
    [InlineData(0, 0, 1, 31, 4096, ProtocolError.MalformedHeader)]       // hash bytes do not match entries
    [InlineData(0, 0, 1, 32, 4095, ProtocolError.MalformedHeader)]       // raw length does not add up
    [InlineData(0, 10, 1, 32, 100, ProtocolError.None)]                  // the short last chunk is fine
    public void Batch_headers_are_checked_before_use(int objectId, long first, int count, int hashBytes, int rawLength, ProtocolError expected)
    {
        var header = new ChunkBatchMessage
        {
            ObjectId = objectId,
            FirstIndex = first,
            Kinds = Enumerable.Repeat((byte)ChunkEntryKind.Data, count).ToArray(),
            Hashes = new byte[hashBytes],
            RawLength = rawLength,
        };
        var error = Record.Exception(() => BatchLayout.Validate(header, [Obj]));
        if (expected == ProtocolError.None)
        {
            Assert.Null(error);
        }
        else
        {
            Assert.Equal(expected, Assert.IsType<ProtocolViolationException>(error).Code);
        }
    }
}
