using System.IO.Pipelines;
using StreamClone.Qemu.Migration;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Tests.Unit.QemuStream;

/// <summary>Hand-built streams shared by the reader tests, with the events they must produce.</summary>
internal static class QemuStreamVectors
{
    public const uint RamId = 2;
    public const string VmDesc = "{\"page_size\":4096,\"devices\":[{\"name\":\"timer\",\"instance_id\":0}]}";

    public static readonly byte[] P1 = QemuStreamBuilder.PatternPage(1);
    public static readonly byte[] P2 = QemuStreamBuilder.PatternPage(2);
    public static readonly byte[] P3 = QemuStreamBuilder.PatternPage(3);
    public static readonly byte[] P4 = QemuStreamBuilder.PatternPage(4);

    /// <summary>Header + configuration of <see cref="Snapshot"/>.</summary>
    public static byte[] Preamble() => new QemuStreamBuilder().FileHeader().Configuration().ToArray();

    /// <summary>The device region of <see cref="Snapshot"/>: two FULL sections, EOF, vmdesc.</summary>
    public static byte[] DeviceRegion() => new QemuStreamBuilder()
        .Full(0, "timer", [1, 2, 3, 0x7E, 0, 0, 0, 0, 0x04])
        .Full(40, "globalstate", [0, 0, 0, 8, .. "running\0"u8])
        .Eof()
        .VmDescription(VmDesc)
        .ToArray();

    /// <summary>
    /// A background-snapshot-shaped stream (note §8.2): START with two blocks; a PART with an out-of-order jump; a
    /// PART that starts with CONTINUE (current block carried across chunks); a ZERO with a non-zero fill; an empty
    /// PART; a COMMAND (PING) between chunks; FULL sections, EOF, vmdesc. No END chunk.
    /// </summary>
    public static byte[] Snapshot() => new QemuStreamBuilder()
        .Bytes(Preamble())
        .RamStart(RamId, ("pc.ram", 4 * 4096), ("pc.bios", 2 * 4096))
        .ShortHeader(F.SectionPart, RamId)
            .Page("pc.ram", 0, P1).Zero(null, 0x1000).Page(null, 0x3000, P2)
            .Eos().Footer(RamId)
        .U8(F.Command).Be16(2).Be16(4).Be32(1)
        .ShortHeader(F.SectionPart, RamId)
            .Page(null, 0x2000, P3).Page("pc.bios", 0x1000, P4).Zero(null, 0, 0xAB)
            .Eos().Footer(RamId)
        .ShortHeader(F.SectionPart, RamId).Eos().Footer(RamId)
        .Bytes(DeviceRegion())
        .ToArray();

    public static readonly string[] SnapshotEvents =
    [
        "blocks pc.ram:16384,pc.bios:8192",
        "page 0 0",
        "fill 0 1000 0",
        "page 0 3000",
        "page 0 2000",
        "page 1 1000",
        "fill 1 0 171",
        $"device {DeviceRegion().Length}",
    ];

    public static async Task<RecordingSink> ReadAsync(PipeReader input, QemuStreamReaderOptions? options = null)
    {
        var sink = new RecordingSink();
        await new QemuStreamReader(input, sink, options).ReadToEndAsync(TestContext.Current.CancellationToken);
        return sink;
    }

    public static async Task<RecordingSink> ReadWholeAsync(byte[] data, QemuStreamReaderOptions? options = null)
    {
        // Unbounded: the whole stream is written before the reader starts (a 16 MiB device region among them).
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        await pipe.Writer.WriteAsync(data, TestContext.Current.CancellationToken);
        await pipe.Writer.CompleteAsync();
        return await ReadAsync(pipe.Reader, options);
    }
}
