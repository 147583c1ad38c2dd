using StreamClone.Shared.Protocol;

namespace StreamClone.Source.Inputs;

/// <summary>
/// What a Source streams: a set of objects readable at any offset (the bulk pass reads them in
/// order, demand requests jump anywhere). Image files today; a live VM's frozen disks and memory
/// later, through the same graph.
/// </summary>
public interface ISnapshotInput : IAsyncDisposable
{
    SnapshotOfferMessage Offer { get; }

    /// <summary>
    /// Reads up to destination.Length bytes at offset of the object; returns bytes read (short only at
    /// the object's end). Offsets reach here from the wire (through demand requests), so every
    /// implementation checks objectId and offset against its own offer itself, without adding, and
    /// throws <see cref="ArgumentOutOfRangeException"/> rather than touch anything outside the object.
    /// </summary>
    ValueTask<int> ReadAsync(int objectId, long offset, Memory<byte> destination, CancellationToken ct);
}
