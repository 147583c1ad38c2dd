using System.Security.Cryptography;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Pipeline;

namespace StreamClone.Tests.Unit.Pipeline;

public class ChunkHashSetTests
{
    [Fact]
    public void Holds_each_hash_once_and_finds_exactly_what_it_holds()
    {
        var hashes = Enumerable.Range(0, 50_000).Select(_ => ChunkHash.Read(RandomNumberGenerator.GetBytes(ChunkHash.Size))).ToArray();
        var set = new ChunkHashSet();
        foreach (var hash in hashes.Take(40_000))
        {
            Assert.True(set.Add(hash));
        }
        Assert.False(set.Add(hashes[123]));
        Assert.Equal(40_000, set.Count);
        Assert.All(hashes.Take(40_000), h => Assert.True(set.Contains(h)));
        Assert.All(hashes.Skip(40_000), h => Assert.False(set.Contains(h)));
    }

    [Fact]
    public async Task A_pipeline_for_a_64_GiB_snapshot_allocates_nothing_in_proportion_to_its_size_up_front()
    {
        // 64 GiB sparse = 16 Mi chunks: a dedup set pre-sized for them would take ~700 MB before the first chunk.
        using var dir = new TempDir();
        var image = dir.File("sparse.img");
        using (var file = File.Create(image))
        {
            file.SetLength(64L << 30);
        }
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "sparse");

        var before = GC.GetAllocatedBytesForCurrentThread();
        var pipeline = new SourcePipeline(input, new SourceOptions(), new BatchBufferScope(BatchBufferPool.Shared));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        GC.KeepAlive(pipeline);
        Assert.True(allocated < 1 << 20, $"constructing the pipeline allocated {allocated} bytes");
    }
}
