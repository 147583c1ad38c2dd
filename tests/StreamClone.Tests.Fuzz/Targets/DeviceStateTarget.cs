using StreamClone.Qemu.Migration;
using StreamClone.Tests.Utilities;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// The device-state object as a sink stores it and restore reads it back (<see cref="DeviceStateObject.Unpack"/>
/// → <see cref="DeviceStateBlob.Deserialize"/>), then the vmdesc lookup restore does on the device region.
/// </summary>
internal sealed class DeviceStateTarget() : FuzzTarget("device-state", typeof(InvalidDataException))
{
    public override IEnumerable<byte[]> Seeds()
    {
        var region = new QemuStreamBuilder().Full(0, "timer", [1, 2, 3, 0x7E, 0, 0, 0, 0, 0x04]).Eof()
            .VmDescription("""{"page_size":4096,"devices":[]}""").ToArray();
        var preamble = new QemuStreamBuilder().FileHeader().Configuration().ToArray();
        var blob = new DeviceStateBlob(preamble, 2, "ram", 0, 4, 4096, [new RamBlockInfo("pc.ram", 1 << 20), new RamBlockInfo("pc.bios", 8192)], region);
        yield return DeviceStateObject.Pack(blob);
        var empty = new DeviceStateBlob(ReadOnlyMemory<byte>.Empty, 0, "", 0, 0, 512, [], ReadOnlyMemory<byte>.Empty);
        yield return DeviceStateObject.Pack(empty);
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        // The object is read back whole: its tail up to the capacity is zeros, which the length prefix must skip.
        var padded = new byte[input.Length + 64];
        input.CopyTo(padded);
        var blob = DeviceStateObject.Unpack(padded);
        _ = DeviceStateBlob.TryLocateVmDescription(blob.DeviceRegion.Span, out _);
        _ = blob.VmDescription;
        _ = blob.Serialize();
    }
}
