using MessagePack;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Model;

/// <summary>What an object of a snapshot holds; restore treats each kind differently.</summary>
public enum ObjectKind : byte
{
    /// <summary>A guest RAM block (chunk i = bytes [i*ChunkSize, ...) of the block).</summary>
    Memory = 1,
    /// <summary>A raw disk image (the frozen base of a live disk).</summary>
    Disk = 2,
    /// <summary>Opaque device state (e.g. QEMU's non-RAM sections), restored as a whole.</summary>
    DeviceState = 3,
}

/// <summary>
/// A snapshot: every object with its size, chunking and the content hash of each chunk.
/// Serialized with MessagePack; <see cref="FormatVersion"/> is checked on load so an older
/// reader refuses a newer manifest instead of misreading it.
/// </summary>
[MessagePackObject]
public sealed class SnapshotManifest : IMessagePackSerializationCallbackReceiver
{
    public const int CurrentFormatVersion = 1;

    [Key(0)] public int FormatVersion { get; set; } = CurrentFormatVersion;
    [Key(1)] public string SnapshotId { get; set; } = "";
    [Key(2)] public DateTime CreatedUtc { get; set; }
    /// <summary>Content hash algorithm; only "blake3-256" exists today.</summary>
    [Key(3)] public string HashAlgorithm { get; set; } = HashAlgorithms.Blake3;
    [Key(4)] public List<ManifestObject> Objects { get; set; } = [];
    /// <summary>Free-form origin (image paths, VM name), for `inspect`.</summary>
    [Key(5)] public string Origin { get; set; } = "";

    public byte[] Serialize() => MessagePackSerializer.Serialize(this, MessagePackDefaults.Options);

    public static SnapshotManifest Deserialize(ReadOnlyMemory<byte> bytes)
    {
        var manifest = MessagePackSerializer.Deserialize<SnapshotManifest>(bytes, MessagePackDefaults.Options)
            ?? throw new InvalidDataException("Manifest is nil, not a snapshot manifest.");
        if (manifest.FormatVersion != CurrentFormatVersion)
        {
            throw new InvalidDataException(
                $"Manifest format version {manifest.FormatVersion} is not supported (this build reads {CurrentFormatVersion}).");
        }
        // A manifest comes from a store directory or a path the user names: every object must be chunkable
        // and carry exactly one hash per chunk before `inspect` or restore index into its hash list.
        foreach (var o in manifest.Objects)
        {
            if (o.Size < 0 || !WireLimits.IsValidChunkSize(o.ChunkSize)
                || o.ChunkHashes.Length != WireLimits.ChunkCount(o.Size, o.ChunkSize) * ChunkHash.Size)
            {
                throw new InvalidDataException(
                    $"Manifest object {o.Id} ({o.Name}): size {o.Size}, chunk size {o.ChunkSize} and {o.ChunkHashes.Length} hash bytes do not fit together.");
            }
        }
        return manifest;
    }

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(SnapshotId, nameof(SnapshotManifest), nameof(SnapshotId));
        NilMembers.Reject(HashAlgorithm, nameof(SnapshotManifest), nameof(HashAlgorithm));
        NilMembers.Reject(Origin, nameof(SnapshotManifest), nameof(Origin));
        NilMembers.RejectItems(Objects, nameof(SnapshotManifest), nameof(Objects));
    }
}

public static class HashAlgorithms
{
    public const string Blake3 = "blake3-256";
}

/// <summary>One object (memory region, disk, device-state blob) of a snapshot.</summary>
[MessagePackObject]
public sealed class ManifestObject : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public int Id { get; set; }
    [Key(1)] public string Name { get; set; } = "";
    [Key(2)] public ObjectKind Kind { get; set; }
    [Key(3)] public long Size { get; set; }
    /// <summary>Bytes per chunk (a multiple of 4096); the last chunk may be shorter.</summary>
    [Key(4)] public int ChunkSize { get; set; }
    /// <summary>Wire compression used for this object's data ("zstd" or "none").</summary>
    [Key(5)] public string Compression { get; set; } = "zstd";
    /// <summary>
    /// ChunkCount * 32 bytes: chunk i's content hash at [32*i, 32*i+32); 32 zero bytes mark a
    /// zero chunk (see <see cref="ChunkHash.ZeroMark"/>). Kept as one blob: a 4 GiB memory object
    /// at 4 KiB chunks has a million hashes, and a blob costs no per-entry overhead.
    /// </summary>
    [Key(6)] public byte[] ChunkHashes { get; set; } = [];

    [IgnoreMember] public long ChunkCount => ChunkMath.ChunkCount(Size, ChunkSize);

    public ChunkHash GetHash(long index) => ChunkHash.Read(ChunkHashes.AsSpan(checked((int)(index * ChunkHash.Size)), ChunkHash.Size));

    /// <summary>BLAKE3 over the chunk-hash list: one value that pins every byte of the object.</summary>
    public ChunkHash ComputeRootHash() => ChunkHash.Compute(ChunkHashes);

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Name, nameof(ManifestObject), nameof(Name));
        NilMembers.Reject(Compression, nameof(ManifestObject), nameof(Compression));
        NilMembers.Reject(ChunkHashes, nameof(ManifestObject), nameof(ChunkHashes));
    }
}

public static class ChunkMath
{
    /// <summary>The page size every chunk size is a multiple of (QEMU's target page on x86).</summary>
    public const int PageSize = WireLimits.PageSize;

    public static long ChunkCount(long size, int chunkSize) => WireLimits.ChunkCount(size, chunkSize);

    public static int ChunkLength(long size, int chunkSize, long index) =>
        (int)Math.Min(chunkSize, size - (index * chunkSize));

    public static void ValidateChunkSize(int chunkSize)
    {
        if (!WireLimits.IsValidChunkSize(chunkSize))
        {
            throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize,
                "Chunk size must be a multiple of 4096 between 4 KiB and 4 MiB.");
        }
    }
}
