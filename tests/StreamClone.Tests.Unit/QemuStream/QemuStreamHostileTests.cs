using StreamClone.Qemu.Migration;
using static StreamClone.Tests.Unit.QemuStream.QemuStreamVectors;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Tests.Unit.QemuStream;

/// <summary>One malformed or unsupported input per wire field; each must fail with a message that names it.</summary>
public class QemuStreamHostileTests
{
    private static QemuStreamBuilder AfterStart() =>
        new QemuStreamBuilder().Bytes(Preamble()).RamStart(RamId, ("pc.ram", 4 * 4096));

    public static TheoryData<string, byte[], string> Cases() => new()
    {
        { "bad magic", new QemuStreamBuilder().FileHeader(magic: 0x51455643).Configuration().ToArray(), "expected the file magic 0x5145564D (\"QEVM\"), got 0x51455643" },
        { "version 2", new QemuStreamBuilder().FileHeader(version: 2).ToArray(), "file version 2" },
        { "version 4", new QemuStreamBuilder().FileHeader(version: 4).ToArray(), "expected file version 3, got 4" },
        {
            "machine name length past any cap",
            new QemuStreamBuilder().FileHeader().U8(F.Configuration).Be32(0xFFFFFF00).ToArray(),
            "machine name length ≤ 1024, got 4294967040"
        },
        {
            "machine name length past the end",
            new QemuStreamBuilder().FileHeader().U8(F.Configuration).Be32(100).Bytes("pc"u8).ToArray(),
            "cut short at offset 15 while reading the configuration section (started at offset 8)"
        },
        {
            "unknown configuration subsection",
            new QemuStreamBuilder().FileHeader().Configuration().Subsection("configuration/new-thing").Be32(1).ToArray(),
            "unknown configuration subsection 'configuration/new-thing'"
        },
        {
            "x-ignore-shared",
            new QemuStreamBuilder().FileHeader().Configuration(capabilities: ["x-ignore-shared"]).ToArray(),
            "x-ignore-shared"
        },
        {
            "target page bits 16",
            new QemuStreamBuilder().FileHeader().Configuration().Subsection("configuration/target-page-bits").Be32(16).ToArray(),
            "target page bits 16"
        },
        {
            "block name counted string past the end",
            new QemuStreamBuilder().Bytes(Preamble()).FullHeader(F.SectionStart, 2, "ram", 0, 4)
                .Be64(4096 | F.RamFlagMemSize).U8(200).Bytes("pc.ram"u8).ToArray(),
            "cut short"
        },
        {
            "command length past the end",
            AfterStart().U8(F.Command).Be16(2).Be16(0x1000).Be32(1).ToArray(),
            "cut short"
        },
        { "unknown section type", AfterStart().U8(0x09).ToArray(), "unknown section type 0x09" },
        { "subsection byte at section level", AfterStart().U8(F.Subsection).ToArray(), "0x05, which is not valid at section level" },
        {
            "wrong footer id",
            AfterStart().ShortHeader(F.SectionPart, RamId).Eos().Footer(RamId + 1).ToArray(),
            "expected footer section id 2, got 3"
        },
        {
            "wrong footer marker",
            AfterStart().ShortHeader(F.SectionPart, RamId).Eos().U8(0x7D).Be32(RamId).ToArray(),
            "expected the section footer marker 0x7E, got 0x7D"
        },
        {
            "PART of another section",
            AfterStart().ShortHeader(F.SectionPart, 9).ToArray(),
            "PART/END of the ram section (id 2), got section type 2 with id 9"
        },
        {
            "PART before START",
            new QemuStreamBuilder().Bytes(Preamble()).ShortHeader(F.SectionPart, 2).ToArray(),
            "the ram START section before any PART/END"
        },
        {
            "ram version 3",
            new QemuStreamBuilder().Bytes(Preamble()).FullHeader(F.SectionStart, 2, "ram", 0, 3).ToArray(),
            "ram section version 3"
        },
        {
            "block migration",
            new QemuStreamBuilder().Bytes(Preamble()).FullHeader(F.SectionStart, 1, "block", 0, 1).ToArray(),
            "iterative section 'block'"
        },
        {
            "second ram START",
            AfterStart().FullHeader(F.SectionStart, 2, "ram", 0, 4).ToArray(),
            "one ram START section"
        },
        {
            "block lengths beyond the MEM_SIZE total",
            new QemuStreamBuilder().Bytes(Preamble()).FullHeader(F.SectionStart, 2, "ram", 0, 4)
                .Be64(4096 | F.RamFlagMemSize).Counted("pc.ram").Be64(8192).ToArray(),
            "used_length of block \"pc.ram\" in 1..4096"
        },
        {
            "duplicate block name",
            new QemuStreamBuilder().Bytes(Preamble()).FullHeader(F.SectionStart, 2, "ram", 0, 4)
                .MemSize(("a", 4096), ("a", 4096)).ToArray(),
            "unique RAM block name"
        },
        {
            "unknown ramblock",
            AfterStart().ShortHeader(F.SectionPart, RamId).Page("vga.vram", 0, P1).ToArray(),
            "unknown ramblock \"vga.vram\""
        },
        {
            "offset beyond used_length",
            AfterStart().ShortHeader(F.SectionPart, RamId).Page("pc.ram", 0x4000, P1).ToArray(),
            "used_length 16384, got 0x4000"
        },
        {
            "CONTINUE before any named block",
            AfterStart().ShortHeader(F.SectionPart, RamId).Page(null, 0, P1).ToArray(),
            "CONTINUE with no current block"
        },
        {
            "XBZRLE",
            AfterStart().ShortHeader(F.SectionPart, RamId).RecordHeader(F.RamFlagXbzrle, "pc.ram", 0).U8(1).Be16(0).ToArray(),
            "XBZRLE"
        },
        {
            "COMPRESS_PAGE",
            AfterStart().ShortHeader(F.SectionPart, RamId).RecordHeader(F.RamFlagCompressPage, "pc.ram", 0).Be32(0).ToArray(),
            "COMPRESS_PAGE"
        },
        {
            "EOS with other flags",
            AfterStart().ShortHeader(F.SectionPart, RamId).Be64(F.RamFlagEos | 0x1000).ToArray(),
            "got record word 0x1010 (flags 0x10)"
        },
        {
            "MEM_SIZE in a PART",
            AfterStart().ShortHeader(F.SectionPart, RamId).MemSize(("pc.ram", 4096)).ToArray(),
            "MEM_SIZE only as the first record of the ram START chunk"
        },
        {
            "postcopy advise",
            new QemuStreamBuilder().Bytes(Preamble()).U8(F.Command).Be16(3).Be16(16).Be64(0).Be64(0).ToArray(),
            "command 3 (postcopy/COLO"
        },
        {
            "postcopy listen",
            AfterStart().U8(F.Command).Be16(4).Be16(0).ToArray(),
            "command 4 (postcopy/COLO"
        },
        {
            "device state before ram",
            new QemuStreamBuilder().Bytes(Preamble()).Full(0, "timer", [1]).Eof().VmDescription("{}").ToArray(),
            "the ram START section (block list) before the device state"
        },
        {
            "cut inside a page",
            AfterStart().ShortHeader(F.SectionPart, RamId).Page("pc.ram", 0, P1.AsSpan(0, 100)).ToArray(),
            "cut short"
        },
        {
            "vmdesc length not matching",
            AfterStart().Full(0, "timer", [1]).Eof().U8(F.VmDescription).Be32(100).Bytes("{}"u8).ToArray(),
            "cut short"
        },
        {
            "vmdesc JSON malformed",
            AfterStart().Full(0, "timer", [1]).Eof().VmDescription("{\"a\":}").ToArray(),
            "JSON"
        },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Hostile_input_is_refused_with_a_clear_message(string name, byte[] data, string expected)
    {
        var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadWholeAsync(data));

        Assert.True(ex.Message.Contains(expected, StringComparison.Ordinal), $"{name}: {ex.Message}");
        Assert.Contains("offset", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_length_beyond_its_cap_is_refused_before_waiting_for_the_bytes()
    {
        // The transport never completes: the reader must fail on the length itself, not wait for 4 GiB.
        var data = new QemuStreamBuilder().FileHeader().U8(F.Configuration).Be32(0xFFFFFF00).ToArray();
        var reader = new DripPipeReader(data, step: data.Length, oneByteSegments: false, visibleLimit: data.Length);

        var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadAsync(reader));

        Assert.DoesNotContain("cut short", ex.Message, StringComparison.Ordinal);
        Assert.Equal(9, ex.Offset);
    }

    [Fact]
    public async Task Error_offsets_point_at_the_bad_unit()
    {
        var prefix = AfterStart().ShortHeader(F.SectionPart, RamId).Eos();
        var footerAt = prefix.Length;
        var data = prefix.Footer(99).ToArray();

        var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadWholeAsync(data));

        Assert.Equal(footerAt + 1, ex.Offset);
        Assert.Contains($"offset {footerAt + 1}", ex.Message, StringComparison.Ordinal);
    }
}
