using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

/// <summary>
/// The store as a relay's cache: the bound, least-recently-used eviction of whole snapshots nobody holds,
/// readers racing evictions, the inventory after one, stale copies from an earlier run, and chunks changed
/// on disk behind the store's back.
/// </summary>
public sealed class ChunkStoreCacheTests : IDisposable
{
    private const int ChunksPerSnapshot = 4;
    private const long SnapshotBytes = ChunksPerSnapshot * Page;

    // Three filled snapshots (data plus a flushed journal of a few hundred bytes each) fit; a fourth does not.
    private const long Bound = (3 * SnapshotBytes) + 2048;

    private readonly TempStore _temp = new();

    public ChunkStoreCacheTests()
    {
        _temp.Options.MaxCacheBytes = Bound;
        _temp.Reopen();                       // opened with the bound, as a relay opens its cache
    }

    public void Dispose() => _temp.Dispose();

    private ChunkStore Store => _temp.Store;

    /// <summary>Creates, fills (seeds seed*100+i), flushes and releases a snapshot: cached and evictable.</summary>
    private async Task<ChunkHash[]> CacheAsync(string id, int seed)
    {
        using var lease = Store.OpenSnapshotLease(Offer(id, (0, SnapshotBytes, Page)));
        var hashes = new ChunkHash[ChunksPerSnapshot];
        for (var i = 0; i < ChunksPerSnapshot; i++)
        {
            hashes[i] = Put(lease.Snapshot, 0, i, (seed * 100) + i);
        }
        await lease.Snapshot.FlushAsync();
        return hashes;
    }

    private void Touch(string id)
    {
        using var lease = Store.AcquireSnapshot(id);
        Assert.NotNull(lease);
    }

    private void AssertCached(params string[] ids) =>
        Assert.Equal(ids.Order(StringComparer.Ordinal), Store.ListSnapshots().Select(s => s.SnapshotId));

    [Fact]
    public async Task The_least_recently_used_snapshot_goes_first_and_its_files_with_it()
    {
        await CacheAsync("s1", 1);
        await CacheAsync("s2", 2);
        await CacheAsync("s3", 3);
        Touch("s1");                          // order of use now: s2, s3, s1

        await CacheAsync("s4", 4);
        AssertCached("s1", "s3", "s4");
        Assert.False(Directory.Exists(Path.Combine(Store.SnapshotsDirectory, "s2")));
        Assert.Null(Store.GetSnapshot("s2"));

        await CacheAsync("s5", 5);
        AssertCached("s1", "s4", "s5");
        Assert.True(Store.CacheBytes <= Bound);
        Assert.False(Directory.Exists(Store.EvictingDirectory) && Directory.EnumerateFileSystemEntries(Store.EvictingDirectory).Any());
    }

    [Fact]
    public async Task A_read_only_open_shows_the_bound_and_the_usage()
    {
        await CacheAsync("s1", 1);
        var usage = Store.CacheBytes;
        Assert.True(usage >= SnapshotBytes);
        Store.Dispose();

        using var readOnly = ChunkStore.OpenReadOnly(_temp.Directory, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        var stats = readOnly.GetStatistics();

        Assert.Equal(Bound, stats.MaxCacheBytes);
        Assert.Equal(usage, stats.CacheBytes);
    }

    [Fact]
    public async Task The_order_of_use_survives_a_restart()
    {
        await CacheAsync("s1", 1);
        await CacheAsync("s2", 2);
        await CacheAsync("s3", 3);
        Touch("s1");
        Touch("s2");                          // order of use: s3, s1, s2

        _temp.Reopen();
        await CacheAsync("s4", 4);

        AssertCached("s1", "s2", "s4");
    }

    [Fact]
    public async Task A_snapshot_someone_holds_is_never_evicted_even_when_it_is_the_oldest()
    {
        await CacheAsync("s1", 1);
        using var reader = Store.AcquireSnapshot("s1")!;   // a child being served from it
        using var filling = Store.OpenSnapshotLease(Offer("s2", (0, SnapshotBytes, Page)));
        Put(filling.Snapshot, 0, 0, 20);                    // partly filled: charged its full size
        await CacheAsync("s3", 3);

        await CacheAsync("s4", 4);                          // needs room: only s3 is free to go

        AssertCached("s1", "s2", "s4");
        Assert.Equal(Put(reader.Snapshot, 0, 1, 101), ReadBack(reader.Snapshot, 1));
        Assert.True(filling.Snapshot.IsPresent(0, 0));
    }

    [Fact]
    public async Task An_offer_that_cannot_fit_beside_what_is_held_is_refused_and_nothing_is_evicted()
    {
        using var held1 = Store.OpenSnapshotLease(Offer("s1", (0, SnapshotBytes, Page)));
        using var held2 = Store.OpenSnapshotLease(Offer("s2", (0, SnapshotBytes, Page)));
        await CacheAsync("s3", 3);

        // s3 alone could go, but 2 held + 2 new is over the bound: refuse without evicting s3.
        var refused = Assert.Throws<ProtocolViolationException>(() => Store.OpenSnapshotLease(Offer("big", (0, 2 * SnapshotBytes, Page))));
        Assert.Equal(ProtocolError.OfferRefused, refused.Code);
        Assert.Contains("in use", refused.Message, StringComparison.Ordinal);
        AssertCached("s1", "s2", "s3");
        Assert.False(Directory.Exists(Path.Combine(Store.SnapshotsDirectory, "big")));

        var tooBig = Assert.Throws<ProtocolViolationException>(() => Store.OpenSnapshotLease(Offer("huge", (0, 4 * SnapshotBytes, Page))));
        Assert.Equal(ProtocolError.OfferRefused, tooBig.Code);
        Assert.Contains("exceeds this relay's cache", tooBig.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task After_an_eviction_the_inventory_lists_a_hash_only_while_another_snapshot_still_holds_it()
    {
        var s1 = await CacheAsync("s1", 1);
        using (var lease = Store.OpenSnapshotLease(Offer("s2", (0, SnapshotBytes, Page))))
        {
            // s2 shares s1's chunk 0 (the index keeps s1's copy as the canonical one) and has its own others.
            lease.Snapshot.PutData(0, 0, s1[0], Data(100, Page));
            for (var i = 1; i < ChunksPerSnapshot; i++)
            {
                Put(lease.Snapshot, 0, i, 200 + i);
            }
            await lease.Snapshot.FlushAsync();
        }
        var evicted = new List<string>();
        Store.SnapshotEvicted += evicted.Add;

        Assert.True(Store.TryEvict("s1", "test"));

        Assert.Equal(["s1"], evicted);
        var inventory = Store.GetInventory("");
        Assert.Contains(s1[0], inventory);
        foreach (var gone in s1[1..])
        {
            Assert.DoesNotContain(gone, inventory);
            Assert.False(Store.Contains(gone));
        }
        // The re-indexed copy is usable: a Known entry for the shared hash copies from s2.
        using var next = Store.OpenSnapshotLease(Offer("s3", (0, SnapshotBytes, Page)));
        Assert.True(next.Snapshot.TryPutKnown(0, 3, s1[0]));
        Assert.False(next.Snapshot.TryPutKnown(0, 2, s1[1]));
        Assert.Equal(Data(100, Page), ReadChunk(next.Snapshot, 0, 3));
    }

    [Fact]
    public async Task An_eviction_waits_out_a_Known_copy_reading_the_snapshot_and_then_no_lookup_finds_it()
    {
        var donor = await CacheAsync("donor", 1);
        using var target = Store.OpenSnapshotLease(Offer("target", (0, SnapshotBytes, Page)));
        using var reading = new ManualResetEventSlim();
        using var evictTried = new ManualResetEventSlim();
        _temp.Options.FaultHook = point =>
        {
            if (point == "BeforeKnownRead" && !evictTried.IsSet)
            {
                reading.Set();
                Assert.True(evictTried.Wait(TimeSpan.FromSeconds(30)), "the evicting side never came");
            }
        };
        var copy = Task.Run(() => target.Snapshot.TryPutKnown(0, 0, donor[0]));
        Assert.True(reading.Wait(TimeSpan.FromSeconds(30)), "the Known copy never reached its read");

        // The copy holds a reference: without it the eviction would close the files under the read.
        Assert.False(Store.TryEvict("donor", "test"));
        evictTried.Set();
        Assert.True(await copy);
        Assert.True(Store.TryEvict("donor", "test"));

        Assert.Equal(Data(100, Page), ReadChunk(target.Snapshot, 0, 0));
        Assert.False(target.Snapshot.TryPutKnown(0, 1, donor[1]));
        Assert.False(Store.Contains(donor[1]));
    }

    [Fact]
    public async Task Known_lookups_racing_evictions_never_read_an_evicted_snapshot()
    {
        // Without references taken under the store lock a copy reads files an eviction closed
        // (ObjectDisposedException) or a cleared slot (NullReferenceException): this fails within a few rounds.
        _temp.Options.MaxCacheBytes = null;
        const int Rounds = 100;
        const int Chunks = 16;
        using var target = Store.OpenSnapshotLease(Offer("target", (0, (long)Rounds * Chunks * Page, Page)));
        for (var round = 0; round < Rounds; round++)
        {
            var donorId = $"donor{round}";
            var hashes = new ChunkHash[Chunks];
            int donorOrdinal;
            using (var donor = Store.OpenSnapshotLease(Offer(donorId, (0, (long)Chunks * Page, Page))))
            {
                for (var i = 0; i < Chunks; i++)
                {
                    hashes[i] = Put(donor.Snapshot, 0, i, (round * 1000) + i + 1);
                }
                donorOrdinal = donor.Snapshot.Ordinal;
            }
            using var evicted = new ManualResetEventSlim();
            using var start = new Barrier(4);
            var readers = Enumerable.Range(0, 3).Select(r => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                var copied = 0;
                do
                {
                    for (var k = 0; k < Chunks; k++)
                    {
                        var i = (k * (r + 1) * 7) % Chunks;
                        copied += target.Snapshot.TryPutKnown(0, ((long)round * Chunks) + i, hashes[i]) ? 1 : 0;
                    }
                }
                while (!evicted.IsSet);
                return copied;
            }, TaskCreationOptions.LongRunning)).ToArray();

            start.SignalAndWait();
            while (!Store.TryEvict(donorId, "test"))
            {
                Thread.Yield();
            }
            evicted.Set();
            await Task.WhenAll(readers);

            foreach (var hash in hashes)
            {
                // A copy committed into the target may be indexed there now; nothing may point into the donor.
                Assert.False(Store.TryGetLocation(hash, out var location) && location.Snapshot == donorOrdinal,
                    "the index still names a place in the evicted snapshot");
            }
            for (var i = 0; i < Chunks; i++)
            {
                var index = ((long)round * Chunks) + i;
                if (target.Snapshot.IsPresent(0, index))
                {
                    Assert.Equal(Data((round * 1000) + i + 1, Page), ReadChunk(target.Snapshot, 0, index));
                }
            }
        }
    }

    [Fact]
    public async Task A_stale_partial_copy_resumes_for_the_same_offer_and_is_replaced_by_a_different_one()
    {
        ChunkHash first;
        using (var lease = Store.OpenSnapshotLease(Offer("vm", (0, SnapshotBytes, Page))))
        {
            first = Put(lease.Snapshot, 0, 0, 1);
            Put(lease.Snapshot, 0, 1, 2);
            await lease.Snapshot.FlushAsync();
        }
        _temp.Reopen();                                    // the relay restarts with the partial copy

        using (var same = Store.OpenSnapshotLease(Offer("vm", (0, SnapshotBytes, Page))))
        {
            Assert.Equal(2, same.Snapshot.PresentChunks);  // resumed: nothing fetched twice
        }

        // Same id, other layout (the source re-used the id): the cache drops its copy and starts over.
        using var other = Store.OpenSnapshotLease(Offer("vm", (0, 2 * SnapshotBytes, 2 * Page)));
        Assert.Equal(0, other.Snapshot.PresentChunks);
        Assert.False(Store.Contains(first));
        Assert.Equal(2 * SnapshotBytes, other.Snapshot.TotalBytes);
    }

    [Fact]
    public async Task A_sink_store_refuses_a_different_offer_under_a_stored_id_as_before()
    {
        _temp.Options.MaxCacheBytes = null;
        using (var lease = Store.OpenSnapshotLease(Offer("vm", (0, SnapshotBytes, Page))))
        {
            Put(lease.Snapshot, 0, 0, 1);
            await lease.Snapshot.FlushAsync();
        }
        _temp.Reopen();

        Assert.Throws<InvalidDataException>(() => Store.OpenSnapshotLease(Offer("vm", (0, 2 * SnapshotBytes, 2 * Page))));
        Assert.Equal(1, Store.GetSnapshot("vm")!.PresentChunks);
    }

    [Fact]
    public async Task A_held_copy_is_not_replaced_by_a_different_offer_under_its_id()
    {
        using var held = Store.OpenSnapshotLease(Offer("vm", (0, SnapshotBytes, Page)));
        Put(held.Snapshot, 0, 0, 1);
        await held.Snapshot.FlushAsync();

        Assert.Throws<InvalidDataException>(() => Store.OpenSnapshotLease(Offer("vm", (0, 2 * SnapshotBytes, 2 * Page))));
        Assert.True(held.Snapshot.IsPresent(0, 0));
    }

    [Fact]
    public async Task A_chunk_changed_on_disk_is_never_served_and_is_fetched_again()
    {
        var hashes = await CacheAsync("s1", 1);
        _temp.Reopen();
        Tamper(_temp.ObjectPath("s1", 0), (2 * Page) + 17, 0x5A);                           // behind the store's back

        using var lease = Store.AcquireSnapshot("s1")!;
        var snapshot = lease.Snapshot;
        var buffer = new byte[SnapshotBytes];
        var read = snapshot.ReadVerified(0, 0, hashes, buffer);

        Assert.Equal(new VerifiedRead(2, 2 * Page), read);
        Assert.Equal(Data(100, Page), buffer[..Page]);
        Assert.All(buffer[(2 * Page)..], b => Assert.Equal(0, b));   // the bad bytes are not handed out
        Assert.False(snapshot.IsPresent(0, 2));
        Assert.False(Store.Contains(hashes[2]));
        Assert.DoesNotContain(hashes[2], Store.GetInventory(""));
        // The next read stops before it again; a Known copy of it is refused, so the bytes are fetched.
        Assert.Equal(new VerifiedRead(0, 0), snapshot.ReadVerified(0, 2, hashes.AsSpan(2), buffer));
        using var other = Store.OpenSnapshotLease(Offer("s2", (0, SnapshotBytes, Page)));
        Assert.False(other.Snapshot.TryPutKnown(0, 0, hashes[2]));

        // Fetched again (as the relay's upstream session would put it): served whole.
        snapshot.PutData(0, 2, hashes[2], Data(102, Page));
        Assert.Equal(new VerifiedRead(4, 4 * Page), snapshot.ReadVerified(0, 0, hashes, buffer));
        Assert.Equal(Data(102, Page), buffer[(2 * Page)..(3 * Page)]);
    }

    [Fact]
    public async Task A_Known_copy_of_a_changed_chunk_drops_it_where_it_lay()
    {
        var hashes = await CacheAsync("s1", 1);
        Tamper(_temp.ObjectPath("s1", 0), Page, 0xA5);
        using var target = Store.OpenSnapshotLease(Offer("s2", (0, SnapshotBytes, Page)));

        Assert.False(target.Snapshot.TryPutKnown(0, 0, hashes[1]));

        Assert.False(target.Snapshot.IsPresent(0, 0));
        Assert.False(Store.GetSnapshot("s1")!.IsPresent(0, 1));
        Assert.False(Store.Contains(hashes[1]));
    }

    [Fact]
    public async Task Zero_chunks_are_served_as_zeros_and_a_zero_place_that_holds_bytes_is_dropped()
    {
        using var lease = Store.OpenSnapshotLease(Offer("z", (0, SnapshotBytes, Page)));
        lease.Snapshot.PutZero(0, 0);
        lease.Snapshot.PutZero(0, 1);
        await lease.Snapshot.FlushAsync();
        Tamper(_temp.ObjectPath("z", 0), Page + 1, 1);
        var buffer = new byte[2 * Page];
        buffer.AsSpan().Fill(0xFF);

        var read = lease.Snapshot.ReadVerified(0, 0, [ChunkHash.ZeroMark, ChunkHash.ZeroMark], buffer);

        Assert.Equal(new VerifiedRead(1, Page), read);
        Assert.All(buffer, b => Assert.Equal(0, b));
        Assert.False(lease.Snapshot.IsPresent(0, 1));
    }

    /// <summary>Another process changing a cached file: shares the file, as nothing stops one on disk.</summary>
    private static void Tamper(string path, long offset, byte value)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
        RandomAccess.Write(handle, [value], offset);
    }

    private static ChunkHash ReadBack(SnapshotAssembly snapshot, long index) => ChunkHash.Compute(ReadChunk(snapshot, 0, index));
}
