using StreamClone.Shared.Model;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

/// <summary>The manifest's hash lists are kept in segments, so objects past 256 GiB (2^26 chunks of 4 KiB) complete.</summary>
public sealed class ManifestHashListTests : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData(300L << 30, Page)]                      // past the old limit: 2.4 GB of hashes
    [InlineData((256L << 30) + Page, Page)]             // one chunk past it
    [InlineData(uint.MaxValue * (long)Page, Page)]      // the most chunks an object may have
    [InlineData(1L << 50, 4 << 20)]                     // 1 PiB at the largest chunk size
    public void Every_segment_of_a_large_object_fits_an_array(long size, int chunkSize)
    {
        var chunks = ChunkMath.ChunkCount(size, chunkSize);
        var count = ManifestObject.SegmentCount(chunks, ManifestObject.DefaultHashesPerSegment);

        var total = 0L;
        for (var i = 0; i < count; i++)
        {
            var bytes = ManifestObject.SegmentBytes(chunks, ManifestObject.DefaultHashesPerSegment, i);
            Assert.InRange(bytes, ChunkHash.Size, Array.MaxLength);
            total += bytes;
        }
        Assert.Equal(chunks * ChunkHash.Size, total);
    }

    [Fact]
    public async Task Completion_across_segment_boundaries_gives_the_root_of_the_whole_list()
    {
        // 4 hashes a segment stands in for 2^20: 10 chunks make segments of 4, 4 and 2 hashes.
        _temp.Options.ManifestHashesPerSegment = 4;
        var offer = Offer("seg", (0, 10 * Page, Page));
        var snapshot = _temp.Reopen().OpenSnapshot(offer);
        var hashes = new ChunkHash[10];
        for (var i = 0; i < 10; i++)
        {
            if (i % 3 == 0)
            {
                snapshot.PutZero(0, i);
            }
            else
            {
                hashes[i] = Put(snapshot, 0, i, i + 1);
            }
        }

        var manifest = await snapshot.CompleteAsync([Root(hashes)], TestContext.Current.CancellationToken);

        var listed = Assert.Single(manifest.Objects);
        Assert.Equal([4 * ChunkHash.Size, 4 * ChunkHash.Size, 2 * ChunkHash.Size], listed.ChunkHashSegments.Select(s => s.Length));
        Assert.Equal(hashes, Enumerable.Range(0, 10).Select(i => listed.GetHash(i)));
        var reread = _temp.Reopen().GetSnapshot("seg")!.ReadManifest()!;
        Assert.Equal(hashes, Enumerable.Range(0, 10).Select(i => reread.Objects[0].GetHash(i)));
        Assert.Equal(Root(hashes), reread.Objects[0].ComputeRootHash().ToArray());
    }

    [Fact]
    public void A_version_1_manifest_with_one_blob_is_still_read()
    {
        var hashes = Enumerable.Range(0, 5).Select(i => ChunkHash.Compute(Data(i, Page))).ToArray();
        var blob = hashes.SelectMany(h => h.ToArray()).ToArray();
        var v1 = new SnapshotManifest
        {
            FormatVersion = 1,
            SnapshotId = "old",
            Objects = [new ManifestObject { Id = 0, Name = "ram", Kind = ObjectKind.Memory, Size = 5 * Page, ChunkSize = Page, LegacyChunkHashes = blob, ChunkHashSegments = [] }],
        };
        using var stream = new MemoryStream();
        v1.SerializeTo(stream);

        var read = SnapshotManifest.Deserialize(stream.ToArray());

        Assert.Equal(SnapshotManifest.CurrentFormatVersion, read.FormatVersion);
        Assert.Equal(hashes, Enumerable.Range(0, 5).Select(i => read.Objects[0].GetHash(i)));
        Assert.Equal(Root(hashes), read.Objects[0].ComputeRootHash().ToArray());
    }

    [Fact]
    public void A_manifest_whose_hash_list_does_not_match_its_size_is_refused()
    {
        var bad = new SnapshotManifest
        {
            SnapshotId = "bad",
            Objects = [new ManifestObject { Id = 0, Name = "ram", Kind = ObjectKind.Memory, Size = 5 * Page, ChunkSize = Page, ChunkHashSegments = [new byte[4 * ChunkHash.Size]] }],
        };
        using var stream = new MemoryStream();
        bad.SerializeTo(stream);
        Assert.Throws<InvalidDataException>(() => SnapshotManifest.Deserialize(stream.ToArray()));
    }
}
