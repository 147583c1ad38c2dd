using StreamClone.Shared.Model;
using StreamClone.Store;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

/// <summary>The in-memory budget: under 80 bytes a chunk for a 4 GiB object at 4 KiB chunks.</summary>
public sealed class ChunkStoreMemoryTests : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Presence_and_index_stay_under_80_bytes_a_chunk()
    {
        const long chunks = 1 << 20;
        var hashes = new ChunkHash[chunks];
        Span<byte> seed = stackalloc byte[8];
        for (var i = 0; i < chunks; i++)
        {
            BitConverter.TryWriteBytes(seed, (long)i);
            hashes[i] = ChunkHash.Compute(seed);
        }

        // Allocations of this thread only, so tests running in parallel do not disturb the count.
        var before = GC.GetAllocatedBytesForCurrentThread();
        var snapshot = _temp.Store.OpenSnapshot(Offer("big", (0, chunks * Page, Page)));
        var afterOpen = GC.GetAllocatedBytesForCurrentThread();
        // Worst case for the index: every chunk unique (the data writes themselves are not the point here).
        for (var i = 0; i < chunks; i++)
        {
            _temp.Store.IndexAdd(hashes[i], new ChunkLocation(0, 0, i));
        }
        var after = GC.GetAllocatedBytesForCurrentThread();

        Assert.Equal(chunks, _temp.Store.GetStatistics().UniqueHashes);
        Assert.Equal(chunks, snapshot.TotalChunks);
        var perChunk = (double)(after - before) / chunks;
        Assert.True(perChunk < 80, $"{perChunk:F1} bytes a chunk");
        // The index was sized at open: filling it allocated (next to) nothing.
        Assert.True(after - afterOpen < 1 << 16, $"{after - afterOpen} bytes allocated while filling the index");
    }
}
