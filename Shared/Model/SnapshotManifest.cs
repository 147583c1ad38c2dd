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
    /// <summary>2: hash lists in segments (<see cref="ManifestObject.ChunkHashSegments"/>); 1 (one blob per object) is still read.</summary>
    public const int CurrentFormatVersion = 2;

    [Key(0)] public int FormatVersion { get; set; } = CurrentFormatVersion;
    [Key(1)] public string SnapshotId { get; set; } = "";
    [Key(2)] public DateTime CreatedUtc { get; set; }
    /// <summary>Content hash algorithm; only "blake3-256" exists today.</summary>
    [Key(3)] public string HashAlgorithm { get; set; } = HashAlgorithms.Blake3;
    [Key(4)] public List<ManifestObject> Objects { get; set; } = [];
    /// <summary>Free-form origin (image paths, VM name), for `inspect`.</summary>
    [Key(5)] public string Origin { get; set; } = "";

    /// <summary>Writes the manifest to <paramref name="stream"/>; unlike a byte[] this has no 2 GiB limit.</summary>
    public void SerializeTo(Stream stream) => MessagePackSerializer.Serialize(stream, this, MessagePackDefaults.Options);

    /// <summary>
    /// Reads and checks a manifest (<see cref="Validate"/>): a file may be damaged or crafted, and its
    /// numbers size loops and index hash lists. <see cref="InvalidDataException"/> names what is wrong.
    /// </summary>
    public static SnapshotManifest Deserialize(ReadOnlyMemory<byte> bytes) =>
        Upgrade(Decode(() => MessagePackSerializer.Deserialize<SnapshotManifest>(bytes, MessagePackDefaults.Options)));

    /// <inheritdoc cref="Deserialize(ReadOnlyMemory{byte})"/>
    public static SnapshotManifest Deserialize(Stream stream) =>
        Upgrade(Decode(() => MessagePackSerializer.Deserialize<SnapshotManifest>(stream, MessagePackDefaults.Options)));

    private static SnapshotManifest Decode(Func<SnapshotManifest?> deserialize)
    {
        try
        {
            // A truncated or overwritten manifest file is bad input like any other: one line, not a stack trace.
            return deserialize() ?? throw new InvalidDataException("the manifest is damaged: it is nil");
        }
        catch (MessagePackSerializationException e)
        {
            throw new InvalidDataException($"the manifest is damaged: {e.InnerException?.Message ?? e.Message}", e);
        }
    }

    private static SnapshotManifest Upgrade(SnapshotManifest manifest)
    {
        if (manifest.FormatVersion == 1)
        {
            // Version 1 kept each hash list as one blob: that is one segment holding every hash.
            foreach (var o in manifest.Objects ?? [])
            {
                if (o is null)
                {
                    continue;
                }
                o.ChunkHashSegments = [o.LegacyChunkHashes ?? []];
                o.HashesPerSegment = (int)Math.Clamp((o.LegacyChunkHashes?.Length ?? 0) / ChunkHash.Size, 1, ManifestObject.MaxHashesPerSegment);
                o.LegacyChunkHashes = null;
            }
            manifest.FormatVersion = CurrentFormatVersion;
        }
        if (manifest.FormatVersion != CurrentFormatVersion)
        {
            throw new InvalidDataException(
                $"Manifest format version {manifest.FormatVersion} is not supported (this build reads 1 and {CurrentFormatVersion}).");
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
            // OfferRules bounded the chunk size and count, so ChunkCount and the segment sizes cannot overflow here.
            if (!o.HasAllHashes)
            {
                throw new InvalidDataException(
                    $"Invalid manifest: object {o.Id} ({o.Name}, {o.Size} bytes, chunk {o.ChunkSize}) does not carry exactly one hash per chunk.");
            }
        }
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
    /// <summary>Version 1's single hash-list blob; read (and turned into one segment) on load, never written.</summary>
    [Key(6)] public byte[]? LegacyChunkHashes { get; set; }

    /// <summary>
    /// The chunk-hash list, 32 bytes a chunk (32 zero bytes mark a zero chunk, see <see cref="ChunkHash.ZeroMark"/>),
    /// cut into segments of <see cref="HashesPerSegment"/> hashes (the last may be shorter). One blob
    /// would be a byte[] of ChunkCount * 32 bytes, which past 2^26 chunks (256 GiB at 4 KiB chunks)
    /// exceeds what an array can hold; segments also let a later reader stream the list.
    /// </summary>
    [Key(7)] public List<byte[]> ChunkHashSegments { get; set; } = [];

    /// <summary>Hashes per segment of <see cref="ChunkHashSegments"/> (all but the last hold exactly this many).</summary>
    [Key(8)] public int HashesPerSegment { get; set; } = DefaultHashesPerSegment;

    /// <summary>2^20 hashes = 32 MiB a segment: a 4 GiB object at 4 KiB chunks is one segment, and no segment nears the array limit.</summary>
    public const int DefaultHashesPerSegment = 1 << 20;

    /// <summary>Largest segment a reader accepts: its bytes must fit one array.</summary>
    public const int MaxHashesPerSegment = int.MaxValue / ChunkHash.Size;

    [IgnoreMember] public long ChunkCount => ChunkMath.ChunkCount(Size, ChunkSize);

    /// <summary>True when the segments hold exactly one hash per chunk (a manifest read from disk may not).</summary>
    [IgnoreMember]
    public bool HasAllHashes
    {
        get
        {
            if (HashesPerSegment is < 1 or > MaxHashesPerSegment || ChunkHashSegments is null || ChunkHashSegments.Count != SegmentCount(ChunkCount, HashesPerSegment))
            {
                return false;
            }
            for (var i = 0; i < ChunkHashSegments.Count; i++)
            {
                if (ChunkHashSegments[i]?.Length != SegmentBytes(ChunkCount, HashesPerSegment, i))
                {
                    return false;
                }
            }
            return true;
        }
    }

    public ChunkHash GetHash(long index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        var segment = index / HashesPerSegment;
        var offset = (int)(index % HashesPerSegment) * ChunkHash.Size;
        return ChunkHash.Read(ChunkHashSegments[checked((int)segment)].AsSpan(offset, ChunkHash.Size));
    }

    /// <summary>BLAKE3 over the chunk-hash list (the segments in order, as one byte string): one value that pins every byte of the object.</summary>
    public ChunkHash ComputeRootHash()
    {
        var hasher = Blake3.Hasher.New();
        try
        {
            foreach (var segment in ChunkHashSegments)
            {
                hasher.Update(segment);
            }
            return ChunkHash.Read(hasher.Finalize().AsSpan());
        }
        finally
        {
            hasher.Dispose();
        }
    }

    /// <summary>Zeroed segments for <paramref name="chunkCount"/> hashes, <paramref name="hashesPerSegment"/> to a segment.</summary>
    public static List<byte[]> NewHashSegments(long chunkCount, int hashesPerSegment)
    {
        var count = SegmentCount(chunkCount, hashesPerSegment);
        var segments = new List<byte[]>(count);
        for (var i = 0; i < count; i++)
        {
            segments.Add(new byte[SegmentBytes(chunkCount, hashesPerSegment, i)]);
        }
        return segments;
    }

    /// <summary>Segments needed for <paramref name="chunkCount"/> hashes (at least one, possibly empty, so an empty object still has a list).</summary>
    public static int SegmentCount(long chunkCount, int hashesPerSegment)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(chunkCount);
        ArgumentOutOfRangeException.ThrowIfLessThan(hashesPerSegment, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(hashesPerSegment, MaxHashesPerSegment);
        return checked((int)Math.Max(1, (chunkCount + hashesPerSegment - 1) / hashesPerSegment));
    }

    /// <summary>Bytes of segment <paramref name="segment"/>: full ones hold hashesPerSegment hashes, the last the rest.</summary>
    public static int SegmentBytes(long chunkCount, int hashesPerSegment, int segment)
    {
        var first = (long)segment * hashesPerSegment;
        return (int)Math.Clamp(chunkCount - first, 0, hashesPerSegment) * ChunkHash.Size;
    }

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Name, nameof(ManifestObject), nameof(Name));
        NilMembers.Reject(Compression, nameof(ManifestObject), nameof(Compression));
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
                $"Chunk size must be a multiple of {WireLimits.PageSize} between {WireLimits.PageSize} and {WireLimits.MaxChunkSize} bytes.");
        }
    }
}
