using StreamClone.Shared.Model;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>`inspect --manifest` on files that are not what they claim: one line, a non-zero exit, no stack trace.</summary>
public class InspectManifestTests
{
    public static TheoryData<string> Crafted => ["chunk size 0", "short hash list", "huge size", "garbage"];

    private static byte[] Make(string what)
    {
        var o = new ManifestObject { Id = 0, Name = "ram", Kind = ObjectKind.Memory, Size = 3 * 4096, ChunkSize = 4096, ChunkHashSegments = [new byte[3 * ChunkHash.Size]] };
        switch (what)
        {
            case "chunk size 0": o.ChunkSize = 0; break;
            case "short hash list": o.ChunkHashSegments = [new byte[ChunkHash.Size]]; break;
            case "huge size": o.Size = long.MaxValue; break;
            default: return "\xc4\xff\xff\xff\xffnot a manifest"u8.ToArray();
        }
        return Bytes(new SnapshotManifest { SnapshotId = "crafted", Objects = [o] });
    }

    [Theory]
    [MemberData(nameof(Crafted))]
    public async Task A_crafted_manifest_gets_one_line_and_exit_1(string what)
    {
        using var dir = new TempDir();
        var path = dir.File("manifest.msgpack");
        await File.WriteAllBytesAsync(path, Make(what), TestContext.Current.CancellationToken);
        await using var inspect = StreamCloneProcess.Start("inspect", "--manifest", path);
        Assert.Equal(1, await inspect.WaitAsync(TimeSpan.FromMinutes(1)));
        var line = Assert.Single(inspect.StderrLines);
        Assert.StartsWith("streamclone: ", line, StringComparison.Ordinal);
    }

    private static byte[] Bytes(SnapshotManifest manifest)
    {
        using var stream = new MemoryStream();
        manifest.SerializeTo(stream);
        return stream.ToArray();
    }
}
