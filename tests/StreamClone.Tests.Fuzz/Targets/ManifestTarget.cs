using StreamClone.Shared.Model;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// A manifest file (manifest.msgpack in a store, `inspect --manifest F`): deserialized, then used the way
/// `inspect` and restore use it — chunk counts, every chunk hash, the root hash.
/// </summary>
internal sealed class ManifestTarget() : FuzzTarget("manifest", typeof(InvalidDataException), typeof(MessagePack.MessagePackSerializationException))
{
    public override IEnumerable<byte[]> Seeds()
    {
        var offer = FuzzSnapshot.Offer();
        var manifest = new SnapshotManifest { SnapshotId = offer.SnapshotId, CreatedUtc = offer.CreatedUtc, Origin = "fuzz" };
        foreach (var o in offer.Objects.Take(2))
        {
            var count = ChunkMath.ChunkCount(o.Size, o.ChunkSize);
            var hashes = new byte[count * ChunkHash.Size];
            for (var i = 0; i < count; i += 2)
            {
                ChunkHash.Compute(FuzzSnapshot.Chunk(o, i)).Write(hashes.AsSpan(i * ChunkHash.Size));
            }
            manifest.Objects.Add(new ManifestObject { Id = o.Id, Name = o.Name, Kind = o.Kind, Size = o.Size, ChunkSize = o.ChunkSize, ChunkHashSegments = [hashes] });
        }
        yield return Bytes(manifest);
        yield return Bytes(new SnapshotManifest { SnapshotId = "empty" });
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        var manifest = SnapshotManifest.Deserialize(input.ToArray());
        foreach (var o in manifest.Objects)
        {
            for (long i = 0; i < o.ChunkCount; i++)
            {
                _ = o.GetHash(i);
            }
            _ = o.ComputeRootHash();
        }
    }

    private static byte[] Bytes(SnapshotManifest manifest)
    {
        using var stream = new MemoryStream();
        manifest.SerializeTo(stream);
        return stream.ToArray();
    }
}
