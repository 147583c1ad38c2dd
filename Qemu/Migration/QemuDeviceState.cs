using System.Buffers.Binary;
using System.Text;

namespace StreamClone.Qemu.Migration;

/// <summary>
/// One RAMBlock from the ram START chunk's MEM_SIZE list (QEMU 7.2 migration/ram.c ram_save_setup):
/// its idstr and used_length. Page offsets in the stream are relative to the block, not guest-physical.
/// </summary>
public sealed record RamBlockInfo(string Name, long UsedLength);

/// <summary>
/// Everything but guest RAM that a restore needs to rebuild a QEMU 7.2 migration stream: the
/// preamble (file header + configuration section, verbatim), the identity of the "ram" section,
/// its block list, and the device region (FULL sections + EOF + vmdesc, verbatim).
/// It travels through the pipeline as the opaque payload of a <see cref="Shared.Model.ObjectKind.DeviceState"/> object.
/// </summary>
/// <remarks>
/// Serialized layout, version 1 (all integers big-endian, like the QEMU stream itself):
/// <code>
/// u8    format version (= 1)
/// be32  preamble length P        (cap 64 KiB)
/// P     preamble: "QEVM", be32 3, then the 0x07 configuration section when the source sent one
/// be32  ram section id           (the sender's registration number; a re-emitter must keep it)
/// u8    idstr length L, L bytes  (always "ram" in 7.2)
/// be32  ram instance id
/// be32  ram section version      (4 in 7.2)
/// be32  target page size         (4096 on x86)
/// be32  block count B            (cap 4096)
/// B x { u8 name length N, N bytes name (Latin-1: byte for byte), be64 used_length }
/// be64  device region length D   (the whole blob fits the device-state object: DeviceStateObject.MaxBlobBytes)
/// D     device region: from the first FULL (0x04) / EOF (0x00) byte after the last RAM chunk to the end of the stream
/// </code>
/// Nothing follows; trailing bytes are an error. A reader refuses any other version byte instead of
/// misreading it.
/// </remarks>
public sealed class DeviceStateBlob
{
    public const byte CurrentFormatVersion = 1;

    /// <summary>Configuration sections are a machine name and a few subsections: tens of bytes on x86.</summary>
    public const int MaxPreambleBytes = 64 * 1024;

    /// <summary>QEMU's ram_list rarely exceeds a few dozen blocks (one per ROM, VGA, memory backend).</summary>
    public const int MaxBlocks = 4096;


    public DeviceStateBlob(
        ReadOnlyMemory<byte> preamble,
        uint ramSectionId,
        string ramIdStr,
        uint ramInstanceId,
        uint ramVersion,
        int targetPageSize,
        IReadOnlyList<RamBlockInfo> blocks,
        ReadOnlyMemory<byte> deviceRegion)
    {
        Preamble = preamble;
        RamSectionId = ramSectionId;
        RamIdStr = ramIdStr;
        RamInstanceId = ramInstanceId;
        RamVersion = ramVersion;
        TargetPageSize = targetPageSize;
        Blocks = blocks;
        DeviceRegion = deviceRegion;
    }

    /// <summary>File header + configuration section, byte for byte as the source sent them.</summary>
    public ReadOnlyMemory<byte> Preamble { get; }

    public uint RamSectionId { get; }

    public string RamIdStr { get; }

    public uint RamInstanceId { get; }

    public uint RamVersion { get; }

    public int TargetPageSize { get; }

    public IReadOnlyList<RamBlockInfo> Blocks { get; }

    /// <summary>FULL sections + EOF (+ vmdesc), byte for byte as the source sent them.</summary>
    public ReadOnlyMemory<byte> DeviceRegion { get; }

    /// <summary>
    /// The vmdesc JSON at the end of the device region, if present (QEMU 7.2 savevm.c
    /// qemu_savevm_state_complete_precopy_non_iterable: <c>0x00 EOF, 0x06, be32 N, N bytes</c>).
    /// </summary>
    public ReadOnlyMemory<byte> VmDescription =>
        TryLocateVmDescription(DeviceRegion.Span, out var start) ? DeviceRegion[start..] : ReadOnlyMemory<byte>.Empty;

    /// <summary>
    /// Finds the vmdesc at the end of a device region: position p with region[p-1] = 0x00 (EOF),
    /// region[p] = 0x06, be32 at p+1 equal to the bytes after it, JSON starting with '{' and ending with '}'
    /// (the check of note qemu-migration-stream.md §7.2 option 2). <paramref name="jsonStart"/> is p+5.
    /// </summary>
    public static bool TryLocateVmDescription(ReadOnlySpan<byte> region, out int jsonStart)
    {
        jsonStart = -1;
        if (region.Length < 8 || region[^1] != (byte)'}')
        {
            return false;
        }

        // The JSON is the tail; walk candidate positions of 0x06 from the end. The length check makes a
        // false hit inside device data practically impossible, and the scan is bounded by the region size.
        for (var p = region.Length - 6; p >= 1; p--)
        {
            if (region[p] != 0x06 || region[p - 1] != 0x00 || region[p + 5] != (byte)'{')
            {
                continue;
            }

            var len = BinaryPrimitives.ReadUInt32BigEndian(region.Slice(p + 1, 4));
            if (len == (uint)(region.Length - p - 5))
            {
                jsonStart = p + 5;
                return true;
            }
        }

        return false;
    }

    /// <summary>Bytes of the serialized blob: <see cref="HeaderLength"/> + the device region.</summary>
    public long SerializedLength => HeaderLength(Preamble.Length, RamIdStr, Blocks) + (long)DeviceRegion.Length;

    /// <summary>
    /// Bytes the serialized layout spends before the device region (everything but D's bytes). Known as soon as
    /// the stream's RAM block list arrived, so the stream reader can cap the device region at exactly what still
    /// fits the device-state object (<see cref="DeviceStateObject.MaxDeviceRegionBytes"/>).
    /// </summary>
    public static long HeaderLength(int preambleLength, string ramIdStr, IReadOnlyList<RamBlockInfo> blocks)
    {
        ArgumentNullException.ThrowIfNull(ramIdStr);
        ArgumentNullException.ThrowIfNull(blocks);
        long length = 1 + 4 + (long)preambleLength + 4 + 1 + Encoding.Latin1.GetByteCount(ramIdStr) + 4 + 4 + 4 + 4;
        foreach (var block in blocks)
        {
            length += 1 + Encoding.Latin1.GetByteCount(block.Name) + 8;
        }

        return length + 8;
    }

    /// <summary>
    /// The layout above. Refuses what <see cref="Deserialize"/> would refuse (a preamble or block list over its
    /// cap), so no blob is written that cannot be read back; the size cap is <see cref="DeviceStateObject.Pack"/>'s.
    /// </summary>
    public byte[] Serialize()
    {
        if (Preamble.Length > MaxPreambleBytes || Blocks.Count > MaxBlocks)
        {
            throw new InvalidDataException(
                $"Device-state blob: preamble of {Preamble.Length} bytes (cap {MaxPreambleBytes}) or {Blocks.Count} RAM blocks (cap {MaxBlocks}) cannot be stored.");
        }

        var output = new byte[checked((int)SerializedLength)];
        var span = output.AsSpan();
        span[0] = CurrentFormatVersion;
        var pos = 1;
        BinaryPrimitives.WriteInt32BigEndian(span[pos..], Preamble.Length);
        pos += 4;
        Preamble.Span.CopyTo(span[pos..]);
        pos += Preamble.Length;
        BinaryPrimitives.WriteUInt32BigEndian(span[pos..], RamSectionId);
        pos += 4;
        pos += WriteCountedString(span[pos..], RamIdStr);
        BinaryPrimitives.WriteUInt32BigEndian(span[pos..], RamInstanceId);
        pos += 4;
        BinaryPrimitives.WriteUInt32BigEndian(span[pos..], RamVersion);
        pos += 4;
        BinaryPrimitives.WriteInt32BigEndian(span[pos..], TargetPageSize);
        pos += 4;
        BinaryPrimitives.WriteInt32BigEndian(span[pos..], Blocks.Count);
        pos += 4;
        foreach (var block in Blocks)
        {
            pos += WriteCountedString(span[pos..], block.Name);
            BinaryPrimitives.WriteInt64BigEndian(span[pos..], block.UsedLength);
            pos += 8;
        }

        BinaryPrimitives.WriteInt64BigEndian(span[pos..], DeviceRegion.Length);
        pos += 8;
        DeviceRegion.Span.CopyTo(span[pos..]);
        return output;
    }

    /// <summary>Parses <see cref="Serialize"/>'s layout; throws <see cref="InvalidDataException"/> on any deviation.</summary>
    public static DeviceStateBlob Deserialize(ReadOnlyMemory<byte> bytes)
    {
        var span = bytes.Span;
        if (span.Length > DeviceStateObject.MaxBlobBytes)
        {
            // The same cap Pack applies and the stream reader applies to the device region: one rule, three places.
            throw new InvalidDataException(
                $"Device-state blob of {span.Length} bytes exceeds the {DeviceStateObject.MaxBlobBytes} bytes a device-state object holds.");
        }

        var pos = 0;
        var version = ReadU8(span, ref pos, "format version");
        if (version != CurrentFormatVersion)
        {
            throw new InvalidDataException(
                $"Device-state blob format version {version} is not supported (this build reads {CurrentFormatVersion}).");
        }

        var preambleLength = ReadLength(span, ref pos, "preamble length", MaxPreambleBytes);
        var preamble = Take(bytes, ref pos, preambleLength, "preamble");
        var sectionId = ReadU32(span, ref pos, "ram section id");
        var idStr = ReadCountedString(span, ref pos, "ram idstr");
        var instance = ReadU32(span, ref pos, "ram instance id");
        var ramVersion = ReadU32(span, ref pos, "ram version");
        var pageSize = ReadLength(span, ref pos, "target page size", 1 << 20);
        if (pageSize < 512 || (pageSize & (pageSize - 1)) != 0)
        {
            throw new InvalidDataException($"Device-state blob: target page size {pageSize} is not a power of two ≥ 512.");
        }

        var count = ReadLength(span, ref pos, "block count", MaxBlocks);
        var blocks = new RamBlockInfo[count];
        for (var i = 0; i < count; i++)
        {
            var name = ReadCountedString(span, ref pos, "block name");
            Need(span, pos, 8, "block used_length");
            var used = BinaryPrimitives.ReadInt64BigEndian(span[pos..]);
            pos += 8;
            if (used < 0)
            {
                throw new InvalidDataException($"Device-state blob: block '{name}' has negative used_length {used}.");
            }

            blocks[i] = new RamBlockInfo(name, used);
        }

        Need(span, pos, 8, "device region length");
        var regionLength = BinaryPrimitives.ReadInt64BigEndian(span[pos..]);
        pos += 8;
        // The blob is at most MaxBlobBytes (checked above), so the bytes left bound the region and the cast below.
        if (regionLength < 0 || regionLength > span.Length - pos)
        {
            throw new InvalidDataException(
                $"Device-state blob: device region length {regionLength} is outside 0..{span.Length - pos} (the bytes left).");
        }

        var region = Take(bytes, ref pos, (int)regionLength, "device region");
        if (pos != bytes.Length)
        {
            throw new InvalidDataException($"Device-state blob: {bytes.Length - pos} trailing bytes after the device region.");
        }

        return new DeviceStateBlob(preamble, sectionId, idStr, instance, ramVersion, pageSize, blocks, region);
    }

    private static int WriteCountedString(Span<byte> dest, string value)
    {
        var n = Encoding.Latin1.GetBytes(value, dest[1..]);
        if (n > 255)
        {
            throw new ArgumentException($"'{value}' is longer than a counted string (255 bytes).", nameof(value));
        }

        dest[0] = (byte)n;
        return 1 + n;
    }

    private static void Need(ReadOnlySpan<byte> span, int pos, int count, string what)
    {
        if (span.Length - pos < count)
        {
            throw new InvalidDataException(
                $"Device-state blob ends at byte {span.Length} while reading {what} ({count} bytes at offset {pos}).");
        }
    }

    private static byte ReadU8(ReadOnlySpan<byte> span, ref int pos, string what)
    {
        Need(span, pos, 1, what);
        return span[pos++];
    }

    private static uint ReadU32(ReadOnlySpan<byte> span, ref int pos, string what)
    {
        Need(span, pos, 4, what);
        var value = BinaryPrimitives.ReadUInt32BigEndian(span[pos..]);
        pos += 4;
        return value;
    }

    private static int ReadLength(ReadOnlySpan<byte> span, ref int pos, string what, int max)
    {
        var value = ReadU32(span, ref pos, what);
        if (value > (uint)max)
        {
            throw new InvalidDataException($"Device-state blob: {what} {value} exceeds the limit of {max}.");
        }

        return (int)value;
    }

    private static string ReadCountedString(ReadOnlySpan<byte> span, ref int pos, string what)
    {
        var len = ReadU8(span, ref pos, what);
        Need(span, pos, len, what);
        var value = Encoding.Latin1.GetString(span.Slice(pos, len));
        pos += len;
        return value;
    }

    private static ReadOnlyMemory<byte> Take(ReadOnlyMemory<byte> bytes, ref int pos, int count, string what)
    {
        Need(bytes.Span, pos, count, what);
        var slice = bytes.Slice(pos, count);
        pos += count;
        return slice;
    }
}
