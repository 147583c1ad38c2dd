using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

public sealed class ChunkStoreTests : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Put_then_read_round_trips_including_a_short_last_chunk()
    {
        const long size = (3 * Page) + 100;
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, size, Page)));
        var expected = new byte[size];
        for (var i = 0; i < 4; i++)
        {
            var data = Data(i, ChunkMath.ChunkLength(size, Page, i));
            snapshot.PutData(0, i, ChunkHash.Compute(data), data);
            data.CopyTo(expected, i * Page);
        }

        Assert.Equal(4, snapshot.PresentChunks);
        Assert.Equal(expected, ReadAll(snapshot, 0));
        var middle = new byte[Page];
        Assert.Equal(Page, snapshot.Read(0, Page + 10, middle));
        Assert.Equal(expected.AsSpan(Page + 10, Page).ToArray(), middle);
        // Reading past the end returns the remainder only.
        Assert.Equal(50, snapshot.Read(0, size - 50, new byte[Page]));
        Assert.Equal(size, new FileInfo(snapshot.GetObjectPath(0)).Length);
    }

    [Fact]
    public async Task A_run_of_chunks_round_trips_around_places_already_present()
    {
        const long size = (5 * Page) + 100;
        var offer = Offer("s1", (0, size, Page));
        var snapshot = _temp.Store.OpenSnapshot(offer);
        var chunks = Enumerable.Range(0, 6).Select(i => Data(i, ChunkMath.ChunkLength(size, Page, i))).ToArray();
        var hashes = chunks.Select(c => ChunkHash.Compute(c)).ToArray();
        snapshot.PutData(0, 2, hashes[2], chunks[2]);
        var seen = new List<long>();
        snapshot.ChunkPresent += (_, i) => seen.Add(i);

        snapshot.PutDataRun(0, 1, hashes.AsSpan(1), [.. chunks.Skip(1).SelectMany(c => c)]);

        Assert.Equal([1L, 3, 4, 5], seen);
        var tail = new byte[size - Page];
        Assert.Equal(tail.Length, snapshot.Read(0, Page, tail));
        Assert.Equal(chunks.Skip(1).SelectMany(c => c).ToArray(), tail);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        Assert.Equal(5, _temp.Reopen().OpenSnapshot(offer).PresentChunks);
    }

    [Fact]
    public void A_run_stops_at_a_conflicting_place_keeping_what_it_placed()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 4 * Page, Page)));
        var chunks = Enumerable.Range(0, 4).Select(i => Data(i, Page)).ToArray();
        var hashes = chunks.Select(c => ChunkHash.Compute(c)).ToArray();
        snapshot.PutZero(0, 2);

        var ex = Assert.Throws<ProtocolViolationException>(() => snapshot.PutDataRun(0, 0, hashes, [.. chunks.SelectMany(c => c)]));

        Assert.Equal(ProtocolError.BadChunkPlacement, ex.Code);
        Assert.True(snapshot.IsPresent(0, 1));
        Assert.False(snapshot.IsPresent(0, 3));
        Assert.Equal(chunks[1], ReadChunk(snapshot, 0, 1));
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(
            () => snapshot.PutDataRun(0, 3, hashes.AsSpan(3), chunks[3].AsSpan(1))).Code);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(
            () => snapshot.PutDataRun(0, 3, hashes.AsSpan(2), new byte[2 * Page])).Code);
    }

    [Fact]
    public void Read_of_an_absent_chunk_throws()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 4 * Page, Page)));
        Put(snapshot, 0, 0, 1);
        Assert.True(snapshot.IsPresent(0, 0));
        Assert.False(snapshot.IsPresent(0, 1));
        var ex = Assert.Throws<InvalidOperationException>(() => snapshot.Read(0, Page - 1, new byte[2]));
        Assert.Contains("chunk 1", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_length_or_index_or_object_is_a_bad_placement()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, Page + 10, Page)));
        var data = Data(1, Page);
        var hash = ChunkHash.Compute(data);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => snapshot.PutData(0, 1, hash, data)).Code);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => snapshot.PutData(0, 2, hash, data)).Code);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => snapshot.PutData(9, 0, hash, data)).Code);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => snapshot.PutZero(0, -1)).Code);
        Assert.Equal(0, snapshot.PresentChunks);
    }

    [Fact]
    public void Zero_chunks_read_as_zeros_and_hold_no_data()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 2 * Page, Page)));
        snapshot.PutZero(0, 0);
        snapshot.PutZero(0, 1);
        Assert.True(snapshot.IsPresent(0, 1));
        Assert.All(ReadAll(snapshot, 0), b => Assert.Equal(0, b));
        var stats = _temp.Store.GetStatistics();
        Assert.Equal(2, stats.ChunksHeld);
        Assert.Equal(2, stats.ZeroChunks);
        Assert.Equal(0, stats.UniqueHashes);
        Assert.Empty(_temp.Store.GetInventory());
    }

    [Fact]
    public void A_repeated_put_is_ignored_but_different_content_is_refused()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 3 * Page, Page)));
        var hash = Put(snapshot, 0, 0, 1);
        Put(snapshot, 0, 0, 1);
        Put(snapshot, 0, 1, 1); // same bytes at another place: the index points at chunk 0, so chunk 1's repeat re-hashes
        Put(snapshot, 0, 1, 1);
        snapshot.PutZero(0, 2);
        snapshot.PutZero(0, 2);
        Assert.Equal(3, snapshot.PresentChunks);

        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => Put(snapshot, 0, 0, 2)).Code);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => Put(snapshot, 0, 1, 2)).Code);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => snapshot.PutZero(0, 0)).Code);
        Assert.Equal(ProtocolError.BadChunkPlacement, Assert.Throws<ProtocolViolationException>(() => Put(snapshot, 0, 2, 1)).Code);
        Assert.Equal(Data(1, Page), ReadChunk(snapshot, 0, 0));
        Assert.Equal([hash], _temp.Store.GetInventory());
    }

    [Fact]
    public void ChunkPresent_is_raised_once_per_new_placement()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 2 * Page, Page)));
        var seen = new List<(int, long)>();
        snapshot.ChunkPresent += (o, i) => seen.Add((o, i));
        Put(snapshot, 0, 1, 1);
        Put(snapshot, 0, 1, 1);
        snapshot.PutZero(0, 0);
        Assert.Equal([(0, 1L), (0, 0L)], seen);
    }

    [Fact]
    public async Task Resume_keeps_only_flushed_chunks()
    {
        var offer = Offer("s1", (0, 8 * Page, Page), (1, 2 * Page, Page));
        var snapshot = _temp.Store.OpenSnapshot(offer);
        var flushed = new[] { Put(snapshot, 0, 0, 10), Put(snapshot, 0, 5, 15) };
        snapshot.PutZero(1, 1);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        var lost = Put(snapshot, 0, 6, 16);
        snapshot.PutZero(0, 7);

        var store = _temp.Reopen();
        var resumed = store.OpenSnapshot(offer);
        Assert.Equal(3, resumed.PresentChunks);
        Assert.True(resumed.IsPresent(0, 0));
        Assert.True(resumed.IsPresent(0, 5));
        Assert.True(resumed.IsPresent(1, 1));
        Assert.False(resumed.IsPresent(0, 6));
        Assert.False(resumed.IsPresent(0, 7));
        Assert.True(store.Contains(flushed[0]));
        Assert.False(store.Contains(lost));
        Assert.Equal(flushed.Order(new HashComparer()), store.GetInventory().Order(new HashComparer()));
        var chunk = new byte[Page];
        resumed.Read(0, 5 * Page, chunk);
        Assert.Equal(Data(15, Page), chunk);

        // The lost places can be put again.
        Put(resumed, 0, 6, 16);
        Assert.True(resumed.IsPresent(0, 6));
    }

    [Fact]
    public void Resuming_with_a_different_offer_is_refused()
    {
        _temp.Store.OpenSnapshot(Offer("s1", (0, 8 * Page, Page)));
        Assert.Throws<InvalidDataException>(() => _temp.Store.OpenSnapshot(Offer("s1", (0, 8 * Page, 2 * Page))));
        Assert.Throws<InvalidDataException>(() => _temp.Store.OpenSnapshot(Offer("s1", (0, 9 * Page, Page))));
        Assert.Throws<InvalidDataException>(() => _temp.Store.OpenSnapshot(Offer("s1", (0, 8 * Page, Page), (1, Page, Page))));
        _temp.Reopen();
        Assert.Throws<InvalidDataException>(() => _temp.Store.OpenSnapshot(Offer("s1", (0, 8 * Page, 4 * Page))));
        // Object ids are positions (batches name objects by position): another id is malformed.
        Assert.Throws<ProtocolViolationException>(() => _temp.Store.OpenSnapshot(Offer("s1", (1, 8 * Page, Page))));
        Assert.Same(_temp.Store.OpenSnapshot(Offer("s1", (0, 8 * Page, Page))), _temp.Store.OpenSnapshot(Offer("s1", (0, 8 * Page, Page))));
    }

    [Fact]
    public void A_second_open_of_a_store_in_use_is_refused()
    {
        var ex = Assert.Throws<ChunkStoreIOException>(() =>
            ChunkStore.Open(_temp.Directory, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance));
        Assert.Contains("in use", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("..")]
    [InlineData("a/b")]
    [InlineData(".hidden")]
    public void Snapshot_ids_that_are_not_plain_names_are_refused(string id)
    {
        Assert.Equal(ProtocolError.MalformedHeader,
            Assert.Throws<ProtocolViolationException>(() => _temp.Store.OpenSnapshot(Offer(id, (0, Page, Page)))).Code);
        Assert.Empty(Directory.GetFileSystemEntries(_temp.Store.SnapshotsDirectory));
    }

    [Fact]
    public async Task Known_chunks_are_copied_across_snapshots_and_within_one()
    {
        var a = _temp.Store.OpenSnapshot(Offer("a", (0, 4 * Page, Page)));
        var h1 = Put(a, 0, 0, 1);
        var h2 = Put(a, 0, 1, 2);
        Assert.True(_temp.Store.Contains(h1));

        // Within one snapshot: chunk 3 repeats chunk 0.
        Assert.True(a.TryPutKnown(0, 3, h1));
        Assert.Equal(Data(1, Page), ReadChunk(a, 0, 3));
        await _temp.Store.FlushAllAsync(TestContext.Current.CancellationToken);

        // Across snapshots, also after a reopen (the index is rebuilt from the journals).
        var store = _temp.Reopen();
        var b = store.OpenSnapshot(Offer("b", (0, 2 * Page, Page)));
        Assert.True(b.TryPutKnown(0, 0, h2));
        Assert.True(b.TryPutKnown(0, 1, h1));
        Assert.True(b.TryPutKnown(0, 1, h1));
        Assert.Equal([.. Data(2, Page), .. Data(1, Page)], ReadAll(b, 0));
        // A present place claimed to hold other content is a conflict, not a miss.
        Assert.Equal(ProtocolError.BadChunkPlacement,
            Assert.Throws<ProtocolViolationException>(() => b.TryPutKnown(0, 0, ChunkHash.Compute(Data(99, Page)))).Code);
        Assert.Equal(2, store.GetInventory().Count);
    }

    [Fact]
    public void An_unknown_hash_is_not_placed()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 2 * Page, Page)));
        Assert.False(snapshot.TryPutKnown(0, 0, ChunkHash.Compute(Data(5, Page))));
        Assert.False(snapshot.IsPresent(0, 0));
        Assert.True(snapshot.TryPutKnown(0, 1, ChunkHash.ZeroMark));
        Assert.True(snapshot.IsPresent(0, 1));
    }

    [Fact]
    public void A_known_chunk_of_another_length_is_not_placed()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, Page + 512, Page)));
        var full = Put(snapshot, 0, 0, 1);
        Assert.False(snapshot.TryPutKnown(0, 1, full));
        Assert.False(snapshot.IsPresent(0, 1));
    }

    [Fact]
    public async Task A_damaged_known_chunk_is_not_copied_and_leaves_the_inventory()
    {
        var a = _temp.Store.OpenSnapshot(Offer("a", (0, 2 * Page, Page)));
        var hash = Put(a, 0, 1, 1);
        await a.FlushAsync(TestContext.Current.CancellationToken);
        _temp.Store.Dispose();
        using (var file = File.OpenWrite(_temp.ObjectPath("a", 0)))
        {
            file.Position = Page + 100;
            file.WriteByte(0xEE);
        }

        var store = _temp.Reopen();
        Assert.True(store.Contains(hash)); // replay trusts the journal...
        var report = await store.VerifyAsync(TestContext.Current.CancellationToken);
        Assert.Equal(new ChunkFault("a", 0, 1, hash), Assert.Single(report.Faults)); // ...verify does not

        var b = store.OpenSnapshot(Offer("b", (0, Page, Page)));
        Assert.False(b.TryPutKnown(0, 0, hash));
        Assert.False(b.IsPresent(0, 0));
        Assert.False(store.Contains(hash));
        // The place stays free for the real bytes.
        Put(b, 0, 0, 1);
        Assert.Equal(Data(1, Page), ReadAll(b, 0));
    }

    [Fact]
    public async Task Complete_refuses_an_incomplete_snapshot()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 2 * Page, Page)));
        var h = Put(snapshot, 0, 0, 1);
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(async () =>
            await snapshot.CompleteAsync([Root(h, ChunkHash.ZeroMark)], TestContext.Current.CancellationToken));
        Assert.Equal(ProtocolError.IncompleteSnapshot, ex.Code);
        Assert.Contains("chunk 1", ex.Message, StringComparison.Ordinal);
        Assert.False(snapshot.IsComplete);
    }

    [Fact]
    public async Task Complete_refuses_a_wrong_root_hash()
    {
        var snapshot = _temp.Store.OpenSnapshot(Offer("s1", (0, 2 * Page, Page)));
        var h = Put(snapshot, 0, 0, 1);
        snapshot.PutZero(0, 1);
        var ex = await Assert.ThrowsAsync<ProtocolViolationException>(async () =>
            await snapshot.CompleteAsync([Root(ChunkHash.ZeroMark, h)], TestContext.Current.CancellationToken));
        Assert.Equal(ProtocolError.RootHashMismatch, ex.Code);
        ex = await Assert.ThrowsAsync<ProtocolViolationException>(async () =>
            await snapshot.CompleteAsync([], TestContext.Current.CancellationToken));
        Assert.Equal(ProtocolError.RootHashMismatch, ex.Code);
        Assert.False(snapshot.IsComplete);
        Assert.False(File.Exists(Path.Combine(_temp.Directory, "snapshots", "s1", "manifest.msgpack")));
    }

    [Fact]
    public async Task Complete_writes_a_manifest_that_survives_a_reopen()
    {
        var offer = Offer("s1", (0, (2 * Page) + 1, Page), (1, 2 * Page, Page));
        var snapshot = _temp.Store.OpenSnapshot(offer);
        var h0 = Put(snapshot, 0, 0, 1);
        snapshot.PutZero(0, 1);
        var h2 = Put(snapshot, 0, 2, 3);
        snapshot.PutZero(1, 0);
        snapshot.PutZero(1, 1);

        var manifest = await snapshot.CompleteAsync([Root(h0, ChunkHash.ZeroMark, h2), Root(ChunkHash.ZeroMark, ChunkHash.ZeroMark)],
            TestContext.Current.CancellationToken);

        Assert.True(snapshot.IsComplete);
        Assert.Equal("s1", manifest.SnapshotId);
        Assert.Equal(h2, manifest.Objects[0].GetHash(2));
        Assert.True(manifest.Objects[1].GetHash(1).IsZeroMark);
        var path = Path.Combine(_temp.Directory, "snapshots", "s1", "manifest.msgpack");
        var onDisk = SnapshotManifest.Deserialize(await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken));
        Assert.Equal(manifest.Objects[0].ChunkHashSegments, onDisk.Objects[0].ChunkHashSegments);
        Assert.Equal("unit-test", onDisk.Origin);
        Assert.False(File.Exists(path + ".tmp"));

        var store = _temp.Reopen();
        var byId = store.GetSnapshot("s1");
        Assert.NotNull(byId);
        Assert.True(byId.IsComplete);
        Assert.Equal(Data(3, 1), ReadChunk(byId, 0, 2));
        Assert.Null(store.GetSnapshot("nope"));
        var info = Assert.Single(store.ListSnapshots());
        Assert.True(info.IsComplete);
        Assert.Equal(5, info.PresentChunks);
        Assert.Equal([3L, 2L], info.Objects.Select(o => o.TotalChunks));
        var again = store.OpenSnapshot(offer);
        Assert.True(again.IsComplete);
        Assert.Equal(manifest.Objects[0].ChunkHashSegments, again.ReadManifest()!.Objects[0].ChunkHashSegments);
    }

    [Fact]
    public async Task Statistics_and_listing_describe_the_store()
    {
        var a = _temp.Store.OpenSnapshot(Offer("a", (0, 3 * Page, Page)));
        Put(a, 0, 0, 1);
        Put(a, 0, 1, 1);
        a.PutZero(0, 2);
        var b = _temp.Store.OpenSnapshot(Offer("b", (0, Page, Page)));
        b.PutZero(0, 0);
        await b.CompleteAsync([Root(ChunkHash.ZeroMark)], TestContext.Current.CancellationToken);
        var stats = _temp.Store.GetStatistics();
        Assert.Equal(4, stats.ChunksHeld);
        Assert.Equal(2, stats.ZeroChunks);
        Assert.Equal(1, stats.UniqueHashes);
        Assert.Equal(2, stats.Snapshots);
        Assert.Equal(1, stats.CompleteSnapshots);
        Assert.True(stats.BytesOnDisk >= 2 * Page);
        var list = _temp.Store.ListSnapshots();
        Assert.Equal(["a", "b"], list.Select(s => s.SnapshotId));
        Assert.Equal(3, list[0].Objects[0].PresentChunks);
        Assert.Equal("obj0", list[0].Objects[0].Name);
    }

    [Fact]
    public async Task Two_threads_putting_chunks_concurrently_all_land()
    {
        const int count = 512;
        var offer = Offer("s1", (0, count * (long)Page, Page));
        var snapshot = _temp.Store.OpenSnapshot(offer);
        using var start = new Barrier(2);
        // Each thread puts its own half, then both race over every place (repeats must be no-ops).
        void Worker(int parity)
        {
            start.SignalAndWait();
            for (var i = parity; i < count; i += 2)
            {
                Put(snapshot, 0, i, i % 100);
            }
            for (var i = 0; i < count; i++)
            {
                Put(snapshot, 0, i, i % 100);
            }
        }
        var threads = new[] { new Thread(() => Worker(0)), new Thread(() => Worker(1)) };
        Array.ForEach(threads, t => t.Start());
        Array.ForEach(threads, t => t.Join());

        Assert.Equal(count, snapshot.PresentChunks);
        Assert.Equal(100, _temp.Store.GetInventory().Count);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        var reopened = _temp.Reopen().OpenSnapshot(offer);
        Assert.Equal(count, reopened.PresentChunks);
        var all = ReadAll(reopened, 0);
        for (var i = 0; i < count; i++)
        {
            Assert.Equal(Data(i % 100, Page), all.AsSpan(i * Page, Page).ToArray());
        }
    }

    private sealed class HashComparer : IComparer<ChunkHash>
    {
        public int Compare(ChunkHash x, ChunkHash y) => string.CompareOrdinal(x.ToString(), y.ToString());
    }
}
