using StreamClone.Qemu.Migration;

namespace StreamClone.Tests.Utilities;

/// <summary>
/// Test double on both ends: a reader sink that keeps every non-zero page (copied) and the device state, and an
/// <see cref="IRamSource"/> that serves them back to the writer.
/// </summary>
public sealed class PageStore : IMigrationStreamSink, IRamSource
{
    public Dictionary<(int Block, long Offset), byte[]> Pages { get; } = [];
    public HashSet<(int Block, long Offset)> Seen { get; } = [];
    public int Duplicates { get; private set; }
    public long PageRecords { get; private set; }
    public long FilledRecords { get; private set; }
    public IReadOnlyList<RamBlockInfo>? Blocks { get; private set; }
    public DeviceStateBlob? DeviceState { get; private set; }

    /// <summary>Set when pages arrive before the block list or after the device state.</summary>
    public string? OrderError { get; private set; }

    public ValueTask OnRamBlocksAsync(IReadOnlyList<RamBlockInfo> blocks, CancellationToken ct)
    {
        Blocks = blocks;
        return default;
    }

    public ValueTask OnPageAsync(int blockIndex, long offset, ReadOnlyMemory<byte> page, CancellationToken ct)
    {
        Note(blockIndex, offset);
        PageRecords++;
        if (page.Span.ContainsAnyExcept((byte)0))
        {
            Pages[(blockIndex, offset)] = page.ToArray();
        }
        else
        {
            Pages.Remove((blockIndex, offset));
        }

        return default;
    }

    public ValueTask OnFilledPageAsync(int blockIndex, long offset, byte fill, CancellationToken ct)
    {
        Note(blockIndex, offset);
        FilledRecords++;
        if (fill != 0)
        {
            var page = new byte[4096];
            page.AsSpan().Fill(fill);
            Pages[(blockIndex, offset)] = page;
        }
        else
        {
            Pages.Remove((blockIndex, offset));
        }

        return default;
    }

    public ValueTask OnDeviceStateAsync(DeviceStateBlob blob, CancellationToken ct)
    {
        DeviceState = blob;
        return default;
    }

    public ValueTask<bool> TryReadPageAsync(int blockIndex, long offset, Memory<byte> destination, CancellationToken ct)
    {
        if (!Pages.TryGetValue((blockIndex, offset), out var page))
        {
            return new(false);
        }

        page.CopyTo(destination);
        return new(true);
    }

    private void Note(int blockIndex, long offset)
    {
        if (Blocks is null || DeviceState is not null)
        {
            OrderError ??= $"page ({blockIndex}, {offset:X}) outside the blocks → device-state window";
        }

        if (!Seen.Add((blockIndex, offset)))
        {
            Duplicates++;
        }
    }
}
