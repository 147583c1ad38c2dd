using System.Buffers;
using StreamClone.Qemu.Migration;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// The snapshot the protocol targets check batches and requests against: an object whose chunk size is
/// two pages and whose last chunk is short, a one-page-chunked object, and the device-state object.
/// Contents are a pattern, so a target can tell the bytes it got from the bytes it should have got.
/// </summary>
internal static class FuzzSnapshot
{
    public const int Page = 4096;

    public static SnapshotOfferMessage Offer() => new()
    {
        SnapshotId = "fuzz-1",
        CreatedUtc = new DateTime(2026, 11, 30, 0, 0, 0, DateTimeKind.Utc),
        Origin = "fuzz",
        Objects =
        [
            new ObjectInfo { Id = 0, Name = "pc.ram", Kind = ObjectKind.Memory, Size = (20 * 2 * Page) - Page, ChunkSize = 2 * Page },
            new ObjectInfo { Id = 1, Name = "disk0", Kind = ObjectKind.Disk, Size = 3 * Page, ChunkSize = Page },
            new ObjectInfo { Id = 2, Name = DeviceStateObject.Name, Kind = ObjectKind.DeviceState, Size = DeviceStateObject.Capacity, ChunkSize = Page },
        ],
    };

    /// <summary>Byte <paramref name="offset"/> of object <paramref name="objectId"/>: every fifth page is zero.</summary>
    public static byte ByteAt(int objectId, long offset) =>
        offset / Page % 5 == 3 ? (byte)0 : (byte)((offset * 31) + (offset >> 12) + (objectId * 7) + 1);

    public static byte[] Chunk(ObjectInfo obj, long index)
    {
        var bytes = new byte[ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index)];
        for (var i = 0; i < bytes.Length; i++)
        {
            bytes[i] = ByteAt(obj.Id, (index * obj.ChunkSize) + i);
        }
        return bytes;
    }

    /// <summary>A batch as the source sends it: Data chunks concatenated and compressed, one hash per non-zero chunk.</summary>
    public static (ChunkBatchMessage Header, byte[] Payload) Batch(ObjectInfo obj, long first, ChunkEntryKind[] kinds, int level)
    {
        var raw = new ArrayBufferWriter<byte>();
        var hashes = new ArrayBufferWriter<byte>();
        for (var i = 0; i < kinds.Length; i++)
        {
            var chunk = Chunk(obj, first + i);
            if (kinds[i] != ChunkEntryKind.Zero)
            {
                ChunkHash.Compute(chunk).Write(hashes.GetSpan(ChunkHash.Size));
                hashes.Advance(ChunkHash.Size);
            }
            if (kinds[i] == ChunkEntryKind.Data)
            {
                raw.Write(chunk);
            }
        }
        var payload = new byte[Math.Max(1, BatchCodec.MaxCompressedLength(raw.WrittenCount))];
        var (codec, length) = BatchCodec.Compress(raw.WrittenSpan, payload, level);
        return (new ChunkBatchMessage
        {
            ObjectId = obj.Id,
            FirstIndex = first,
            Kinds = [.. kinds.Select(k => (byte)k)],
            Hashes = hashes.WrittenSpan.ToArray(),
            Codec = codec,
            RawLength = raw.WrittenCount,
        }, payload[..length]);
    }

    public static IEnumerable<(ChunkBatchMessage Header, byte[] Payload)> Batches()
    {
        var objects = Offer().Objects;
        yield return Batch(objects[0], 0, [ChunkEntryKind.Data, ChunkEntryKind.Zero, ChunkEntryKind.Known, ChunkEntryKind.Data], 1);
        yield return Batch(objects[0], 18, [ChunkEntryKind.Data, ChunkEntryKind.Data], 0);
        yield return Batch(objects[1], 2, [ChunkEntryKind.Data], 3);
        yield return Batch(objects[2], 4095, [ChunkEntryKind.Zero], 1);
    }

    /// <summary>A segment size derived from the input itself, so a saved input replays with the same split.</summary>
    public static int SegmentSizeFor(ReadOnlySpan<byte> input)
    {
        var hash = System.IO.Hashing.Crc32.HashToUInt32(input);
        return (hash % 4) switch
        {
            0 => int.MaxValue,
            1 => input.Length <= 2048 ? 1 : 7,
            2 => 7,
            _ => 509,
        };
    }
}
