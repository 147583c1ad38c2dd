using StreamClone.Qemu.Migration;

namespace StreamClone.Tests.Unit.QemuStream;

/// <summary>Records every sink call as a line; keeps page contents so tests compare bytes, not only order.</summary>
internal sealed class RecordingSink : IMigrationStreamSink
{
    public List<string> Events { get; } = [];
    public List<byte[]> Pages { get; } = [];
    public IReadOnlyList<RamBlockInfo>? Blocks { get; private set; }
    public DeviceStateBlob? DeviceState { get; private set; }

    public ValueTask OnRamBlocksAsync(IReadOnlyList<RamBlockInfo> blocks, CancellationToken ct)
    {
        Blocks = blocks;
        Events.Add("blocks " + string.Join(",", blocks.Select(b => $"{b.Name}:{b.UsedLength}")));
        return default;
    }

    public ValueTask OnPageAsync(int blockIndex, long offset, ReadOnlyMemory<byte> page, CancellationToken ct)
    {
        Assert.Equal(4096, page.Length);
        Events.Add($"page {blockIndex} {offset:X}");
        Pages.Add(page.ToArray());
        return default;
    }

    public ValueTask OnFilledPageAsync(int blockIndex, long offset, byte fill, CancellationToken ct)
    {
        Events.Add($"fill {blockIndex} {offset:X} {fill}");
        return default;
    }

    public ValueTask OnDeviceStateAsync(DeviceStateBlob blob, CancellationToken ct)
    {
        DeviceState = blob;
        Events.Add($"device {blob.DeviceRegion.Length}");
        return default;
    }
}
