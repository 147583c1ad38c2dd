using System.Diagnostics.CodeAnalysis;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared;

/// <summary>
/// The one rule for a snapshot offer, checked by the sink session when it arrives and by the store
/// before it lays anything out (and again when it loads a stored offer), so no two copies can differ.
/// Every number in an offer later sizes a file, a bitmap or an index, so each is checked here with
/// arithmetic that cannot wrap. Per-node policy (how much of its disk a node grants) is the store's
/// business, on top of this.
/// </summary>
public static class OfferRules
{
    /// <summary>
    /// Throws <see cref="ProtocolViolationException"/> (<see cref="ProtocolError.MalformedHeader"/>)
    /// naming the first bad field; returns the offer's total size in bytes.
    /// </summary>
    public static long Validate(SnapshotOfferMessage offer)
    {
        ArgumentNullException.ThrowIfNull(offer);
        if (offer.HashAlgorithm != HashAlgorithms.Blake3)
        {
            Fail($"unsupported hash algorithm '{offer.HashAlgorithm}'");
        }
        if (!WireLimits.IsValidSnapshotId(offer.SnapshotId))
        {
            // The id becomes a directory name in the store: the rule keeps it inside snapshots/.
            Fail($"snapshot id must be {WireLimits.SnapshotIdRule}");
        }
        if (offer.Upstreams is { } hints && (hints.Count > WireLimits.MaxUpstreamHints || hints.Any(h => h is null || h.Length == 0 || h.Length > WireLimits.MaxUpstreamHintLength)))
        {
            Fail($"snapshot {offer.SnapshotId}: {hints.Count} upstream hints; at most {WireLimits.MaxUpstreamHints} of 1 to {WireLimits.MaxUpstreamHintLength} characters are allowed");
        }
        var objects = offer.Objects;
        // At least one object: a completion message is checked against the first.
        if (objects is null || objects.Count == 0 || objects.Count > WireLimits.MaxObjects)
        {
            Fail($"snapshot {offer.SnapshotId} has {objects?.Count ?? 0} objects; 1 to {WireLimits.MaxObjects} are allowed");
        }
        long total = 0;
        for (var i = 0; i < objects.Count; i++)
        {
            var o = objects[i];
            // Batches and demand requests name an object by its position, so ids are positions.
            if (o is null || o.Id != i)
            {
                Fail($"snapshot {offer.SnapshotId}: object #{i} must have id {i}");
            }
            if (o.Name is null || o.Name.Length > WireLimits.MaxObjectNameLength || !Enum.IsDefined(o.Kind))
            {
                Fail($"snapshot {offer.SnapshotId}: object {i} has a name over {WireLimits.MaxObjectNameLength} characters or an unknown kind");
            }
            if (o.Size < 0 || !WireLimits.IsValidChunkSize(o.ChunkSize))
            {
                Fail($"snapshot {offer.SnapshotId}: object {i} ({o.Name}) has size {o.Size} / chunk size {o.ChunkSize}; " +
                    $"chunk size must be a multiple of {WireLimits.PageSize} up to {WireLimits.MaxChunkSize}");
            }
            if (WireLimits.ChunkCount(o.Size, o.ChunkSize) > WireLimits.MaxChunksPerObject)
            {
                Fail($"snapshot {offer.SnapshotId}: object {i} ({o.Name}) of {o.Size} bytes has more than {WireLimits.MaxChunksPerObject} chunks");
            }
            // Restore reads this object whole into memory.
            if (o.Kind == ObjectKind.DeviceState && o.Size > WireLimits.MaxDeviceStateBytes)
            {
                Fail($"snapshot {offer.SnapshotId}: device-state object {i} of {o.Size} bytes exceeds {WireLimits.MaxDeviceStateBytes}");
            }
            // Each size is at most MaxChunksPerObject * MaxChunkSize (2^54), so 4096 of them (2^66)
            // could still wrap a long: compare against the room left instead of adding first.
            if (o.Size > long.MaxValue - total)
            {
                Fail($"snapshot {offer.SnapshotId}: object sizes add up to more than {long.MaxValue} bytes");
            }
            total += o.Size;
        }
        return total;
    }

    [DoesNotReturn]
    private static void Fail(string message) => ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, message);
}
