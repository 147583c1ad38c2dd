
namespace StreamClone.Qemu.Migration;

/// <summary>
/// Receives what <see cref="QemuStreamReader"/> decodes, in stream order, one call at a time (the reader awaits
/// each call before parsing on, so a slow consumer is backpressure on the socket).
/// </summary>
public interface IMigrationStreamSink
{
    /// <summary>The block list of the ram START chunk; always before any page. Block indexes below refer to it.</summary>
    ValueTask OnRamBlocksAsync(IReadOnlyList<RamBlockInfo> blocks, CancellationToken ct);

    /// <summary>
    /// A PAGE record: 4096 bytes at byte <paramref name="offset"/> of block <paramref name="blockIndex"/>.
    /// <paramref name="page"/> is a view of the reader's pipe buffer (or of its one straddle buffer): it is valid
    /// only until the returned task completes; copy what you keep. Pages come in no guaranteed order.
    /// </summary>
    ValueTask OnPageAsync(int blockIndex, long offset, ReadOnlyMemory<byte> page, CancellationToken ct);

    /// <summary>A ZERO record: the page is filled with <paramref name="fill"/> (always 0 from QEMU 7.2).</summary>
    ValueTask OnFilledPageAsync(int blockIndex, long offset, byte fill, CancellationToken ct);

    /// <summary>At the end of the stream: everything but RAM that a restore needs (see <see cref="DeviceStateBlob"/>).</summary>
    ValueTask OnDeviceStateAsync(DeviceStateBlob blob, CancellationToken ct);
}
