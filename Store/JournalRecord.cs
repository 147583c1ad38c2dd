using System.Buffers.Binary;
using System.IO.Hashing;
using Microsoft.Win32.SafeHandles;
using StreamClone.Shared.Model;

namespace StreamClone.Store;

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

/// <summary>The journal file header, a reader that stops at the first bad record, and a scanner that reads past them.</summary>
internal static class JournalFormat
{
    public const int HeaderSize = 16;

    /// <summary>"SCJRNL" + format 1; bumped if the record layout ever changes.</summary>
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

    /// <summary>
    /// Visits records in file order until the end, a torn record, a CRC failure, or the visitor
    /// refusing one. Returns the byte length of the valid prefix (header included) and why it stopped.
    /// </summary>
    public static long Read(SafeFileHandle handle, string path, long length, Func<JournalRecord, bool> visit, out string? stopReason)
    {
        const int RecordsPerRead = 4096;
        var buffer = new byte[RecordsPerRead * JournalRecord.Size];
        long position = HeaderSize;
        stopReason = null;
        while (position < length)
        {
            var want = (int)Math.Min(buffer.Length, length - position);
            var got = StoreIO.ReadFully(handle, path, buffer.AsSpan(0, want), position);
            var whole = got / JournalRecord.Size * JournalRecord.Size;
            for (var offset = 0; offset < whole; offset += JournalRecord.Size)
            {
                if (!JournalRecord.TryRead(buffer.AsSpan(offset, JournalRecord.Size), out var record))
                {
                    stopReason = "CRC mismatch";
                    return position + offset;
                }
                if (!visit(record))
                {
                    stopReason = "record does not fit the snapshot";
                    return position + offset;
                }
            }
            position += whole;
            if (whole < want)
            {
                stopReason = "torn record";
                return position;
            }
        }
        return position;
    }

    /// <summary>
    /// Visits every whole record after the header, with its file offset and whether its CRC holds
    /// (<paramref name="visit"/> gets a default record when it does not). Returns the end of the last
    /// whole record; a partial record after it is not visited.
    /// </summary>
    public static long Scan(SafeFileHandle handle, string path, long length, Action<long, bool, JournalRecord> visit)
    {
        const int RecordsPerRead = 4096;
        var buffer = new byte[RecordsPerRead * JournalRecord.Size];
        long position = HeaderSize;
        while (position < length)
        {
            var want = (int)Math.Min(buffer.Length, length - position);
            var got = StoreIO.ReadFully(handle, path, buffer.AsSpan(0, want), position);
            var whole = got / JournalRecord.Size * JournalRecord.Size;
            for (var offset = 0; offset < whole; offset += JournalRecord.Size)
            {
                var valid = JournalRecord.TryRead(buffer.AsSpan(offset, JournalRecord.Size), out var record);
                visit(position + offset, valid, record);
            }
            position += whole;
            if (whole < want)
            {
                break;
            }
        }
        return position;
    }
}
