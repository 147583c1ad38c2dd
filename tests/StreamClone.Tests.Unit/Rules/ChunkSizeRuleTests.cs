using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Live;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Rules;

/// <summary>
/// The one chunk-size rule (<see cref="WireLimits.IsValidChunkSize"/>: a multiple of the page, one page to
/// <see cref="WireLimits.MaxChunkSize"/>) at its edges, in every place that checks a chunk size: the offer rule,
/// the manifest loader, the source's options and inputs, and the demand split.
/// </summary>
public sealed class ChunkSizeRuleTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<int> Valid =>
    [
        WireLimits.PageSize,
        2 * WireLimits.PageSize,
        WireLimits.MaxChunkSize - WireLimits.PageSize,
        WireLimits.MaxChunkSize,
    ];

    public static TheoryData<int> Invalid =>
    [
        0,
        -WireLimits.PageSize,
        WireLimits.PageSize - 1,
        WireLimits.PageSize + 1,
        WireLimits.MaxChunkSize - 1,
        WireLimits.MaxChunkSize + 1,
        WireLimits.MaxChunkSize + WireLimits.PageSize,
        int.MaxValue,
    ];

    [Fact]
    public void The_largest_chunk_is_the_largest_batch_so_one_chunk_always_fits_one_batch_and_one_demand_answer()
    {
        Assert.Equal(WireLimits.MaxBatchRawBytes, WireLimits.MaxChunkSize);
        Assert.Equal(1, WireLimits.MaxDemandChunksFor(WireLimits.MaxChunkSize));
        Assert.Equal(WireLimits.MaxDemandChunks, WireLimits.MaxDemandChunksFor(WireLimits.PageSize));
    }

    [Theory]
    [MemberData(nameof(Valid))]
    public async Task A_valid_chunk_size_passes_every_check(int chunkSize)
    {
        Assert.True(WireLimits.IsValidChunkSize(chunkSize));
        OfferRules.Validate(Offer("c", (0, 3L * chunkSize, chunkSize)));
        Assert.Equal(3, SnapshotManifest.Deserialize(ManifestBytes(chunkSize)).Objects[0].ChunkCount);
        new SourceOptions { ChunkSize = chunkSize, BatchChunks = 1 }.Validate();
        await using (var input = ImageInput(chunkSize))
        {
            Assert.Equal(chunkSize, input.Offer.Objects[0].ChunkSize);
        }
        await using (new LiveSnapshotInput(_dir.File("ram"), [], chunkSize, "c"))
        {
        }
        Assert.InRange(WireLimits.MaxDemandChunksFor(chunkSize), 1, WireLimits.MaxDemandChunks);
    }

    [Theory]
    [MemberData(nameof(Invalid))]
    public void An_invalid_chunk_size_is_refused_by_every_check(int chunkSize)
    {
        Assert.False(WireLimits.IsValidChunkSize(chunkSize));
        var offer = Assert.Throws<ProtocolViolationException>(() => OfferRules.Validate(Offer("c", (0, 3L * WireLimits.PageSize, chunkSize))));
        Assert.Equal(ProtocolError.MalformedHeader, offer.Code);
        Assert.Throws<InvalidDataException>(() => SnapshotManifest.Deserialize(ManifestBytes(chunkSize)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new SourceOptions { ChunkSize = chunkSize, BatchChunks = 1 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => ImageInput(chunkSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = new LiveSnapshotInput(_dir.File("ram"), [], chunkSize, "c"); });
        Assert.Throws<ArgumentOutOfRangeException>(() => WireLimits.MaxDemandChunksFor(chunkSize));
    }

    private ImageFileInput ImageInput(int chunkSize)
    {
        var image = _dir.File("image.raw");
        File.WriteAllBytes(image, new byte[Page]);
        return ImageFileInput.Open([(image, ObjectKind.Memory)], chunkSize, "c");
    }

    /// <summary>A manifest of one object of three chunks (hash list sized for a valid chunk size, else one hash).</summary>
    private static byte[] ManifestBytes(int chunkSize)
    {
        var manifest = new SnapshotManifest
        {
            SnapshotId = "c",
            Objects = [new ManifestObject { Id = 0, Name = "ram", Kind = ObjectKind.Memory, Size = 3L * Math.Max(chunkSize, 1), ChunkSize = chunkSize, ChunkHashSegments = [new byte[3 * ChunkHash.Size]] }],
        };
        using var stream = new MemoryStream();
        manifest.SerializeTo(stream);
        return stream.ToArray();
    }
}
