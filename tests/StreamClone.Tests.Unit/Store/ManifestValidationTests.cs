using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Model;

namespace StreamClone.Tests.Unit.Store;

/// <summary>Manifests are files: damaged or crafted ones are refused on load with one InvalidDataException.</summary>
public sealed class ManifestValidationTests
{
    private static SnapshotManifest Valid() => new()
    {
        SnapshotId = "m",
        Objects = [new ManifestObject { Id = 0, Name = "ram", Kind = ObjectKind.Memory, Size = 3 * 4096, ChunkSize = 4096, ChunkHashSegments = [new byte[3 * ChunkHash.Size]] }],
    };

    public static TheoryData<string> Crafted => ["chunk size 0", "short hash list", "huge size", "id not a position", "no objects", "bad id", "garbage", "nil"];

    private static byte[] Make(string what)
    {
        var m = Valid();
        var o = m.Objects[0];
        switch (what)
        {
            case "chunk size 0": o.ChunkSize = 0; break;
            case "short hash list": o.ChunkHashSegments = [new byte[ChunkHash.Size + 3]]; break;
            case "huge size": o.Size = long.MaxValue; break;
            case "id not a position": o.Id = 5; break;
            case "no objects": m.Objects = []; break;
            case "bad id": m.SnapshotId = "../x"; break;
            case "garbage": return "not a manifest at all"u8.ToArray();
            case "nil": return MessagePackSerializer.Serialize<SnapshotManifest?>(null, MessagePackDefaults.Options);
        }
        return Bytes(m);
    }

    [Theory]
    [MemberData(nameof(Crafted))]
    public void A_crafted_manifest_is_refused_on_load(string what) =>
        Assert.Throws<InvalidDataException>(() => SnapshotManifest.Deserialize(Make(what)));

    [Fact]
    public void A_valid_manifest_loads() => Assert.Equal(3, SnapshotManifest.Deserialize(Bytes(Valid())).Objects[0].ChunkCount);

    private static byte[] Bytes(SnapshotManifest manifest)
    {
        using var stream = new MemoryStream();
        manifest.SerializeTo(stream);
        return stream.ToArray();
    }
}
