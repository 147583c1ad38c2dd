using System.Buffers.Binary;
using System.IO.Hashing;
using StreamClone.Shared.Model;

namespace StreamClone.Store.Journal;

/// <summary>
/// One journal entry: "place (ObjectId, Index) holds bytes with this hash" (or the zero mark).
/// A record is appended only after the bytes it vouches for are durable, so replay trusts it.
/// </summary>
/// <remarks>
/// File layout (little-endian): a 16-byte <see cref="JournalFormat"/> header, then fixed 48-byte records:
/// <code>
///  [0..4)   int32   object id (the offer's ObjectInfo.Id)
///  [4..12)  int64   chunk index
///  [12..44) byte[32] BLAKE3 of the chunk, or 32 zero bytes for a zero chunk (no data written)
///  [44..48) uint32  CRC-32 of [0..44)
/// </code>
/// Fixed size keeps a torn tail detectable by length alone; the CRC catches a record whose blocks
/// reached the disk only partly (or as zeros, which some filesystems expose after a crash: the
/// CRC-32 of 44 zero bytes is not zero).
/// </remarks>
internal readonly record struct JournalRecord(int ObjectId, long Index, ChunkHash Hash)
{
    public const int Size = 48;
    private const int CrcOffset = 44;

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteInt32LittleEndian(destination, ObjectId);
        BinaryPrimitives.WriteInt64LittleEndian(destination[4..], Index);
        Hash.Write(destination[12..]);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[CrcOffset..], Crc32.HashToUInt32(destination[..CrcOffset]));
    }

    /// <summary>False when the CRC does not match: the record was torn or damaged.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out JournalRecord record)
    {
        if (Crc32.HashToUInt32(source[..CrcOffset]) != BinaryPrimitives.ReadUInt32LittleEndian(source[CrcOffset..]))
        {
            record = default;
            return false;
        }
        record = new JournalRecord(
            BinaryPrimitives.ReadInt32LittleEndian(source),
            BinaryPrimitives.ReadInt64LittleEndian(source[4..]),
            ChunkHash.Read(source[12..]));
        return true;
    }
}

/// <summary>The journal file header.</summary>
/// <remarks>
/// <code>
///  [0..8)   "SCJRNL\0" + format 1 (bumped if the record layout ever changes)
///  [8..12)  int32   record size, 48: a file claiming any other size is not read at all, so no length
///                   in the file ever sizes a buffer (reads go in fixed blocks of whole records)
///  [12..16) int32   0 (reserved)
/// </code>
/// </remarks>
internal static class JournalFormat
{
    public const int HeaderSize = 16;

    /// <summary>Records per read or write of the journal: a fixed 192 KiB buffer whatever the file's length.</summary>
    public const int RecordsPerBlock = 4096;

    private static ReadOnlySpan<byte> Magic => "SCJRNL\0\u0001"u8;

    public static void WriteHeader(Span<byte> destination)
    {
        Magic.CopyTo(destination);
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], JournalRecord.Size);
        BinaryPrimitives.WriteInt32LittleEndian(destination[12..], 0);
    }

    public static bool IsValidHeader(ReadOnlySpan<byte> source) =>
        source.Length >= HeaderSize
        && source[..8].SequenceEqual(Magic)
        && BinaryPrimitives.ReadInt32LittleEndian(source[8..]) == JournalRecord.Size;
}
