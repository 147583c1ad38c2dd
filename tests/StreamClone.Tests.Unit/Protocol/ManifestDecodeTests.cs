using MessagePack;
using StreamClone.Shared.Model;

namespace StreamClone.Tests.Unit.Protocol;

/// <summary>
/// A manifest file comes from a store directory or a path the user names (`inspect --manifest F`): it is
/// refused as a whole when its objects cannot be chunked or their hash lists do not match their chunk
/// counts, instead of failing with ArgumentOutOfRange or NullReference where `inspect` or restore first
/// touch a chunk. Found by the fuzz target "manifest" (tests/StreamClone.Tests.Fuzz).
/// </summary>
public class ManifestDecodeTests
{
    private static SnapshotManifest Valid() => new()
    {
        SnapshotId = "s1",
        Objects = [new ManifestObject { Id = 0, Name = "m", Kind = ObjectKind.Memory, Size = 3 * 4096, ChunkSize = 8192, ChunkHashSegments = [new byte[2 * 32]] }],
    };

    [Fact]
    public void A_valid_manifest_round_trips() =>
        Assert.Equal(2, SnapshotManifest.Deserialize(Bytes(Valid())).Objects[0].ChunkCount);

    [Fact]
    public void A_nil_manifest_is_refused() =>
        Assert.Throws<InvalidDataException>(() => SnapshotManifest.Deserialize(new byte[] { 0xc0 }));

    public static TheoryData<string> Damages => ["chunk size 0", "chunk size not a page multiple", "negative size", "hash list too short", "hash list too long", "nil hash list", "nil object", "nil objects"];

    [Theory]
    [MemberData(nameof(Damages))]
    public void A_manifest_whose_objects_do_not_add_up_is_refused(string damage)
    {
        var manifest = Valid();
        var obj = manifest.Objects[0];
        switch (damage)
        {
            case "chunk size 0": obj.ChunkSize = 0; break;
            case "chunk size not a page multiple": obj.ChunkSize = 5000; break;
            case "negative size": obj.Size = -4096; break;
            case "hash list too short": obj.ChunkHashSegments = [new byte[32]]; break;
            case "hash list too long": obj.ChunkHashSegments = [new byte[3 * 32]]; break;
            case "nil hash list": obj.ChunkHashSegments = null!; break;
            case "nil object": manifest.Objects[0] = null!; break;
            case "nil objects": manifest.Objects = null!; break;
        }
        var bytes = Bytes(manifest);

        var e = Record.Exception(() => SnapshotManifest.Deserialize(bytes));
        Assert.True(e is InvalidDataException or MessagePackSerializationException, $"{damage}: {e?.GetType().Name ?? "accepted"}: {e?.Message}");
    }

    private static byte[] Bytes(SnapshotManifest manifest)
    {
        using var stream = new MemoryStream();
        manifest.SerializeTo(stream);
        return stream.ToArray();
    }
}
