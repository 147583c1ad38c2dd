using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Tests.Utilities;

/// <summary>
/// Builds QEMU 7.2 migration streams byte by byte, following shared/notes/qemu-migration-stream.md (§2 header,
/// §3 configuration, §4 section headers/footers, §6 ram records, §7.3 vmdesc). Independent of the reader and the
/// writer under test, so a shared misunderstanding does not cancel out.
/// </summary>
public sealed class QemuStreamBuilder
{
    private readonly ArrayBufferWriter<byte> _out = new();

    public int Length => _out.WrittenCount;

    public byte[] ToArray() => _out.WrittenSpan.ToArray();

    public QemuStreamBuilder U8(byte value)
    {
        _out.GetSpan(1)[0] = value;
        _out.Advance(1);
        return this;
    }

    public QemuStreamBuilder Be16(ushort value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(_out.GetSpan(2), value);
        _out.Advance(2);
        return this;
    }

    public QemuStreamBuilder Be32(uint value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(_out.GetSpan(4), value);
        _out.Advance(4);
        return this;
    }

    public QemuStreamBuilder Be64(ulong value)
    {
        BinaryPrimitives.WriteUInt64BigEndian(_out.GetSpan(8), value);
        _out.Advance(8);
        return this;
    }

    public QemuStreamBuilder Bytes(ReadOnlySpan<byte> value)
    {
        _out.Write(value);
        return this;
    }

    public QemuStreamBuilder Counted(string value)
    {
        var bytes = Encoding.ASCII.GetBytes(value);
        return U8((byte)bytes.Length).Bytes(bytes);
    }

    public QemuStreamBuilder FileHeader(uint magic = F.FileMagic, uint version = F.FileVersion) => Be32(magic).Be32(version);

    /// <summary>0x07, be32 len + name, then optional subsections (x86 sends none).</summary>
    public QemuStreamBuilder Configuration(string machine = "pc-q35-7.2", string[]? capabilities = null, byte[]? uuid = null)
    {
        U8(F.Configuration).Be32((uint)machine.Length).Bytes(Encoding.ASCII.GetBytes(machine));
        if (capabilities is not null)
        {
            Subsection("configuration/capabilities").Be32((uint)capabilities.Length);
            foreach (var capability in capabilities)
            {
                Counted(capability);
            }
        }

        if (uuid is not null)
        {
            Subsection("configuration/uuid").Bytes(uuid);
        }

        return this;
    }

    public QemuStreamBuilder Subsection(string name, uint version = 1) => U8(F.Subsection).Counted(name).Be32(version);

    public QemuStreamBuilder FullHeader(byte type, uint sectionId, string idStr, uint instance, uint version) =>
        U8(type).Be32(sectionId).Counted(idStr).Be32(instance).Be32(version);

    public QemuStreamBuilder ShortHeader(byte type, uint sectionId) => U8(type).Be32(sectionId);

    public QemuStreamBuilder Footer(uint sectionId) => U8(F.SectionFooter).Be32(sectionId);

    /// <summary>ram START: full header, MEM_SIZE + block list, EOS, footer.</summary>
    public QemuStreamBuilder RamStart(uint sectionId, params (string Name, long Length)[] blocks)
    {
        FullHeader(F.SectionStart, sectionId, "ram", 0, F.RamSectionVersion);
        MemSize(blocks);
        return Eos().Footer(sectionId);
    }

    public QemuStreamBuilder MemSize(params (string Name, long Length)[] blocks)
    {
        long total = 0;
        foreach (var block in blocks)
        {
            total += block.Length;
        }

        Be64((ulong)total | F.RamFlagMemSize);
        foreach (var (name, length) in blocks)
        {
            Counted(name).Be64((ulong)length);
        }

        return this;
    }

    /// <summary>PAGE record; block null means CONTINUE.</summary>
    public QemuStreamBuilder Page(string? block, long offset, ReadOnlySpan<byte> page)
    {
        RecordHeader(F.RamFlagPage, block, offset);
        return Bytes(page);
    }

    /// <summary>ZERO record with a fill byte; block null means CONTINUE.</summary>
    public QemuStreamBuilder Zero(string? block, long offset, byte fill = 0)
    {
        RecordHeader(F.RamFlagZero, block, offset);
        return U8(fill);
    }

    public QemuStreamBuilder RecordHeader(int flag, string? block, long offset)
    {
        var flags = (uint)flag | (block is null ? (uint)F.RamFlagContinue : 0u);
        Be64((ulong)offset | flags);
        return block is null ? this : Counted(block);
    }

    public QemuStreamBuilder Eos() => Be64(F.RamFlagEos);

    /// <summary>A FULL device section with an opaque body and its footer.</summary>
    public QemuStreamBuilder Full(uint sectionId, string idStr, ReadOnlySpan<byte> body, uint instance = 0, uint version = 1) =>
        FullHeader(F.SectionFull, sectionId, idStr, instance, version).Bytes(body).Footer(sectionId);

    public QemuStreamBuilder Eof() => U8(F.Eof);

    public QemuStreamBuilder VmDescription(string json)
    {
        var bytes = Encoding.ASCII.GetBytes(json);
        return U8(F.VmDescription).Be32((uint)bytes.Length).Bytes(bytes);
    }

    public static byte[] PatternPage(int seed)
    {
        var page = new byte[4096];
        new Random(seed).NextBytes(page);
        return page;
    }
}
