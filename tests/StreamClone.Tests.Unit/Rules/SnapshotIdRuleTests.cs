using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source.Inputs;
using StreamClone.Source.Live;
using StreamClone.Tests.Unit.Store;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Rules;

/// <summary>
/// The one snapshot-id rule (<see cref="WireLimits.SnapshotIdRule"/>) at its edges, in every place that checks an id:
/// the offer rule, the store (creating and loading a snapshot directory), the manifest loader and the source's inputs.
/// The CLI options are pinned by the process tests (SnapshotIdOptionTests).
/// </summary>
public sealed class SnapshotIdRuleTests : IDisposable
{
    private readonly TempStore _store = new();
    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _store.Dispose();
        _dir.Dispose();
    }

    /// <summary>At and just inside the edges: one character, 64 characters, every allowed character.</summary>
    public static TheoryData<string> Valid =>
    [
        "a",
        "Z",
        "0",
        new string('a', WireLimits.MaxSnapshotIdLength - 1),
        new string('a', WireLimits.MaxSnapshotIdLength),
        "0123456789abcdefABCDEF_-xyz",
        "a-",
        "a_",
    ];

    /// <summary>Just outside: empty, 65 characters, anything that is not a plain directory name or reads as an option.</summary>
    public static TheoryData<string> Invalid =>
    [
        "",
        new string('a', WireLimits.MaxSnapshotIdLength + 1),
        ".",
        "..",
        ".a",
        "a.b",
        "a/b",
        "/a",
        "../x",
        "-a",
        "_a",
        "a b",
        "a\0",
        "é",
    ];

    [Theory]
    [MemberData(nameof(Valid))]
    public async Task A_valid_id_passes_every_check_and_names_its_directory(string id)
    {
        Assert.True(WireLimits.IsValidSnapshotId(id));
        OfferRules.Validate(Offer(id, (0, Page, Page)));
        Assert.NotNull(SnapshotManifest.Deserialize(ManifestBytes(id)));
        await using (var input = ImageInput(id))
        {
            Assert.Equal(id, input.Offer.SnapshotId);
        }
        await using (var live = new LiveSnapshotInput(_dir.File("ram"), [], Page, id))
        {
            Assert.False(live.OfferReady.IsCompleted);
        }

        _store.Store.OpenSnapshot(Offer(id, (0, Page, Page)));
        Assert.True(Directory.Exists(Path.Combine(_store.Directory, "snapshots", id)));
        Assert.Equal(id, Assert.Single(_store.Reopen().ListSnapshots()).SnapshotId);
    }

    [Theory]
    [MemberData(nameof(Invalid))]
    public void An_invalid_id_is_refused_by_every_check_before_anything_is_written(string id)
    {
        Assert.False(WireLimits.IsValidSnapshotId(id));
        var offer = Assert.Throws<ProtocolViolationException>(() => OfferRules.Validate(Offer(id, (0, Page, Page))));
        Assert.Equal(ProtocolError.MalformedHeader, offer.Code);
        Assert.Contains(WireLimits.SnapshotIdRule, offer.Message, StringComparison.Ordinal);

        Assert.Throws<ProtocolViolationException>(() => _store.Store.OpenSnapshot(Offer(id, (0, Page, Page))));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_store.Directory, "snapshots")));

        Assert.Throws<InvalidDataException>(() => SnapshotManifest.Deserialize(ManifestBytes(id)));
        Assert.Contains(WireLimits.SnapshotIdRule, Assert.Throws<ArgumentException>(() => ImageInput(id)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => { _ = new LiveSnapshotInput(_dir.File("ram"), [], Page, id); });
        Assert.False(Directory.Exists(_dir.File("ram")), "a refused live input creates nothing");
    }

    [Theory]
    [InlineData("a.b")]
    [InlineData("-a")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]
    public void A_store_directory_holding_an_offer_with_an_invalid_id_is_refused_on_load(string id)
    {
        var directory = Path.Combine(_store.Directory, "snapshots", id);
        Directory.CreateDirectory(directory);
        File.WriteAllBytes(Path.Combine(directory, "offer.msgpack"), MessagePackSerializer.Serialize(Offer(id, (0, Page, Page)), MessagePackDefaults.Options));

        var error = Assert.Throws<InvalidDataException>(() => _store.Reopen());
        Assert.Contains("not a valid snapshot offer", error.Message, StringComparison.Ordinal);
        Assert.Contains(WireLimits.SnapshotIdRule, error.Message, StringComparison.Ordinal);
    }

    private ImageFileInput ImageInput(string id)
    {
        var image = _dir.File("image.raw");
        File.WriteAllBytes(image, new byte[Page]);
        return ImageFileInput.Open([(image, ObjectKind.Memory)], Page, id);
    }

    private static byte[] ManifestBytes(string id)
    {
        var manifest = new SnapshotManifest
        {
            SnapshotId = id,
            Objects = [new ManifestObject { Id = 0, Name = "ram", Kind = ObjectKind.Memory, Size = Page, ChunkSize = Page, ChunkHashSegments = [new byte[ChunkHash.Size]] }],
        };
        using var stream = new MemoryStream();
        manifest.SerializeTo(stream);
        return stream.ToArray();
    }
}
