using System.Buffers.Binary;
using StreamClone.Qemu.Migration;
using StreamClone.Tests.Utilities;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// QEMU's migration stream (<see cref="QemuStreamReader"/>), revealed in steps derived from the input so
/// units straddle segment boundaries. The sink checks what the reader promises its consumer: blocks
/// before pages, every page inside its block, one device state at the end.
/// </summary>
internal sealed class QemuStreamTarget() : FuzzTarget("qemu-stream", typeof(QemuStreamException))
{
    // Small enough that the page bitmap a hostile MEM_SIZE sizes stays cheap per exec.
    // Inputs are at most 128 KiB, so the device-region cap (what the device-state object holds) never binds here.
    private static readonly QemuStreamReaderOptions Options = new() { MaxRamBytes = 64L << 20 };

    public override int MaxInputLength => 128 << 10;

    public override IReadOnlyList<byte[]> Dictionary { get; } =
    [
        .. new[] { F.Eof, F.SectionStart, F.SectionPart, F.SectionEnd, F.SectionFull, F.Subsection, F.VmDescription, F.Configuration, F.Command, F.SectionFooter }.Select(b => new[] { b }),
        .. new[] { F.RamFlagFull, F.RamFlagZero, F.RamFlagMemSize, F.RamFlagPage, F.RamFlagEos, F.RamFlagContinue, F.RamFlagXbzrle, F.RamFlagHook, F.RamFlagCompressPage, F.RamFlagPage | F.RamFlagContinue, F.RamFlagZero | F.RamFlagContinue }
            .Select(f => Be64(f)),
        "ram"u8.ToArray(), "pc.ram"u8.ToArray(), [0x51, 0x45, 0x56, 0x4D], [0, 0, 0, 3],
    ];

    private static byte[] Be64(long value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteInt64BigEndian(bytes, value);
        return bytes;
    }

    public override IEnumerable<byte[]> Seeds()
    {
        var p1 = QemuStreamBuilder.PatternPage(1);
        var p2 = QemuStreamBuilder.PatternPage(2);
        var region = new QemuStreamBuilder()
            .Full(0, "timer", [1, 2, 3, 0x7E, 0, 0, 0, 0, 0x04])
            .Full(40, "globalstate", [0, 0, 0, 8, .. "running\0"u8])
            .Eof()
            .VmDescription("""{"page_size":4096,"devices":[{"name":"timer","instance_id":0}]}""")
            .ToArray();
        yield return new QemuStreamBuilder()
            .FileHeader().Configuration()
            .RamStart(2, ("pc.ram", 4 * 4096), ("pc.bios", 2 * 4096))
            .ShortHeader(F.SectionPart, 2)
                .Page("pc.ram", 0, p1).Zero(null, 0x1000).Page(null, 0x3000, p2)
                .Eos().Footer(2)
            .U8(F.Command).Be16(2).Be16(4).Be32(1)
            .ShortHeader(F.SectionPart, 2)
                .Page(null, 0x2000, p2).Page("pc.bios", 0x1000, p1).Zero(null, 0, 0xAB)
                .Eos().Footer(2)
            .ShortHeader(F.SectionPart, 2).Eos().Footer(2)
            .Bytes(region)
            .ToArray();
        yield return new QemuStreamBuilder()
            .FileHeader().Configuration()
            .RamStart(2, ("pc.ram", 4096))
            .ShortHeader(F.SectionEnd, 2).Zero("pc.ram", 0).Eos().Footer(2)
            .Bytes(region)
            .ToArray();
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        var data = input.ToArray();
        var hash = System.IO.Hashing.Crc32.HashToUInt32(input);
        var step = (int)(hash % 3) switch { 0 => data.Length + 1, 1 => 1 + (int)(hash >> 8) % 4099, _ => 4096 };
        var reader = new DripPipeReader(data, Math.Max(1, step), oneByteSegments: false);
        new QemuStreamReader(reader, new CheckingSink(), Options).ReadToEndAsync().GetAwaiter().GetResult();
    }

    private sealed class CheckingSink : IMigrationStreamSink
    {
        private IReadOnlyList<RamBlockInfo>? _blocks;
        private bool _done;

        public ValueTask OnRamBlocksAsync(IReadOnlyList<RamBlockInfo> blocks, CancellationToken ct)
        {
            Require(_blocks is null && !_done, "a second block list, or one after the device state");
            Require(blocks.All(b => b.UsedLength >= 0), "a negative block length");
            _blocks = blocks;
            return default;
        }

        public ValueTask OnPageAsync(int blockIndex, long offset, ReadOnlyMemory<byte> page, CancellationToken ct)
        {
            Require(page.Length == F.TargetPageSize, $"a page of {page.Length} bytes");
            CheckPlace(blockIndex, offset);
            return default;
        }

        public ValueTask OnFilledPageAsync(int blockIndex, long offset, byte fill, CancellationToken ct)
        {
            CheckPlace(blockIndex, offset);
            return default;
        }

        public ValueTask OnDeviceStateAsync(DeviceStateBlob blob, CancellationToken ct)
        {
            Require(!_done, "a second device state");
            _done = true;
            DeviceStateObject.Pack(blob);
            return default;
        }

        private void CheckPlace(int blockIndex, long offset)
        {
            Require(_blocks is not null && !_done, "a page before the block list or after the device state");
            Require((uint)blockIndex < (uint)_blocks!.Count, $"block index {blockIndex} of {_blocks.Count}");
            var used = _blocks[blockIndex].UsedLength;
            Require(offset >= 0 && offset % F.TargetPageSize == 0 && offset <= used - F.TargetPageSize,
                $"page at {offset} of a {used}-byte block");
        }

        private static void Require(bool condition, string what)
        {
            if (!condition)
            {
                throw new FuzzInvariantException($"the QEMU stream reader handed its sink {what}");
            }
        }
    }
}
