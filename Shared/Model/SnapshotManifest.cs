using MessagePack;

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
public sealed class SnapshotManifest
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

    /// <summary>
    /// Reads and checks a manifest (<see cref="Validate"/>): a file may be damaged or crafted, and its
    /// numbers size loops and index hash lists. <see cref="InvalidDataException"/> names what is wrong.
    /// </summary>
    public static SnapshotManifest Deserialize(ReadOnlyMemory<byte> bytes)
    {
        SnapshotManifest? manifest;
        try
        {
            manifest = MessagePackSerializer.Deserialize<SnapshotManifest>(bytes, MessagePackDefaults.Options);
        }
        catch (MessagePackSerializationException ex)
        {
            throw new InvalidDataException($"Not a readable manifest: {ex.InnerException?.Message ?? ex.Message}", ex);
        }
        if (manifest is null)
        {
            throw new InvalidDataException("Not a readable manifest: it is nil.");
        }
        if (manifest.FormatVersion != CurrentFormatVersion)
        {
            throw new InvalidDataException(
                $"Manifest format version {manifest.FormatVersion} is not supported (this build reads {CurrentFormatVersion}).");
        }
        manifest.Validate();
        return manifest;
    }

    /// <summary>
    /// The offer's rules (<see cref="OfferRules"/>: id, algorithm, object count, ids as positions,
    /// chunk sizes, chunk counts) plus one 32-byte hash per chunk; <see cref="InvalidDataException"/> otherwise.
    /// </summary>
    public void Validate()
    {
        var objects = Objects ?? [];
        var offer = new Protocol.SnapshotOfferMessage
        {
            SnapshotId = SnapshotId,
            HashAlgorithm = HashAlgorithm,
            Objects = [.. objects.Select(o => o is null ? null! : new Protocol.ObjectInfo { Id = o.Id, Name = o.Name, Kind = o.Kind, Size = o.Size, ChunkSize = o.ChunkSize })],
        };
        try
        {
            OfferRules.Validate(offer);
        }
        catch (Protocol.ProtocolViolationException ex)
        {
            throw new InvalidDataException($"Invalid manifest: {ex.Message}", ex);
        }
        foreach (var o in objects)
        {
            // ChunkCount is at most WireLimits.MaxChunksPerObject (2^32), so the product fits a long.
            var expected = o.ChunkCount * ChunkHash.Size;
            if (o.ChunkHashes is null || o.ChunkHashes.LongLength != expected)
            {
                throw new InvalidDataException(
                    $"Invalid manifest: object {o.Id} ({o.Name}) has {o.ChunkHashes?.LongLength ?? 0} hash bytes; its {o.ChunkCount} chunks need {expected}.");
            }
        }
    }
}

public static class HashAlgorithms
{
    public const string Blake3 = "blake3-256";
}

/// <summary>One object (memory region, disk, device-state blob) of a snapshot.</summary>
[MessagePackObject]
public sealed class ManifestObject
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
