using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store;
using StreamClone.Store.Journal;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

/// <summary>What a crash or a damaged journal leaves behind, and what replay makes of it.</summary>
public sealed class JournalReplayTests : IDisposable
{
    private const int HeaderSize = 16;
    private const int RecordSize = 48;

    private readonly TempStore _temp = new();
    private readonly SnapshotOfferMessage _offer = Offer("s1", (0, 8 * Page, Page));

    public void Dispose() => _temp.Dispose();

    private async Task<SnapshotAssembly> PutFlushedAsync(int chunks)
    {
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        for (var i = 0; i < chunks; i++)
        {
            Put(snapshot, 0, i, i + 1);
        }
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        _temp.Store.Dispose();
        return snapshot;
    }

    [Fact]
    public async Task Records_are_appended_at_fixed_size()
    {
        await PutFlushedAsync(5);
        Assert.Equal(HeaderSize + (5 * RecordSize), new FileInfo(_temp.JournalPath("s1")).Length);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(RecordSize - 1)]
    public async Task A_torn_tail_loses_only_the_torn_record(int cut)
    {
        await PutFlushedAsync(5);
        var path = _temp.JournalPath("s1");
        using (var file = File.OpenWrite(path))
        {
            file.SetLength(file.Length - cut);
        }

        var snapshot = _temp.Reopen().OpenSnapshot(_offer);

        Assert.Equal(4, snapshot.PresentChunks);
        Assert.False(snapshot.IsPresent(0, 4));
        // The torn bytes are cut off, so the next append is readable on the next replay.
        Assert.Equal(HeaderSize + (4 * RecordSize), new FileInfo(path).Length);
        Put(snapshot, 0, 4, 5);
        Put(snapshot, 0, 7, 8);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        Assert.Equal(6, _temp.Reopen().OpenSnapshot(_offer).PresentChunks);
    }

    [Fact]
    public async Task Every_truncation_point_keeps_exactly_the_whole_records()
    {
        await PutFlushedAsync(3);
        var path = _temp.JournalPath("s1");
        var full = await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken);
        for (var length = HeaderSize; length <= full.Length; length++)
        {
            await File.WriteAllBytesAsync(path, full[..length], TestContext.Current.CancellationToken);
            var snapshot = _temp.Reopen().OpenSnapshot(_offer);
            var whole = (length - HeaderSize) / RecordSize;
            Assert.Equal(whole, snapshot.PresentChunks);
            Assert.Equal(HeaderSize + (whole * RecordSize), new FileInfo(path).Length);
            _temp.Store.Dispose();
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(20)]
    [InlineData(47)]
    public async Task A_corrupt_final_record_is_a_torn_tail(int byteInRecord)
    {
        await PutFlushedAsync(5);
        var path = _temp.JournalPath("s1");
        FlipByte(path, HeaderSize + (4 * RecordSize) + byteInRecord);

        var snapshot = _temp.Reopen().OpenSnapshot(_offer);

        Assert.Equal(4, snapshot.PresentChunks);
        Assert.False(snapshot.IsPresent(0, 4));
        Assert.Equal(HeaderSize + (4 * RecordSize), new FileInfo(path).Length);
        Assert.Empty(CorruptCopies());
        Assert.Null(snapshot.JournalDamage);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(20)]
    [InlineData(47)]
    public async Task A_corrupt_record_in_the_middle_loses_only_its_own_chunk(int byteInRecord)
    {
        await PutFlushedAsync(5);
        var path = _temp.JournalPath("s1");
        FlipByte(path, HeaderSize + RecordSize + byteInRecord);
        var damaged = await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken);

        var snapshot = _temp.Reopen().OpenSnapshot(_offer);

        Assert.Equal(4, snapshot.PresentChunks);
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(i != 1, snapshot.IsPresent(0, i));
        }
        Assert.Equal(4, _temp.Store.GetInventory().Count);
        Assert.Equal(Data(5, Page), ReadChunk(snapshot, 0, 4));
        Assert.Contains("byte " + (HeaderSize + RecordSize), snapshot.JournalDamage, StringComparison.Ordinal);
        // The damaged journal is kept byte for byte; the live one is rebuilt from what verified.
        Assert.Equal(damaged, await File.ReadAllBytesAsync(Assert.Single(CorruptCopies()), TestContext.Current.CancellationToken));
        Assert.Equal(HeaderSize + (4 * RecordSize), new FileInfo(path).Length);

        // The rebuilt journal is a sound one: appends go on, and the next open finds no damage.
        Put(snapshot, 0, 1, 2);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        var reopened = _temp.Reopen().OpenSnapshot(_offer);
        Assert.Equal(5, reopened.PresentChunks);
        Assert.Null(reopened.JournalDamage);
        Assert.True((await _temp.Store.VerifyAsync(TestContext.Current.CancellationToken)).IsClean);
    }

    [Fact]
    public async Task One_flipped_byte_in_record_10_of_1024_keeps_the_snapshot_complete()
    {
        // The case: a complete snapshot, one byte flipped in record 10. Every chunk still
        // verifies against the manifest, so nothing is lost and the snapshot stays complete.
        var offer = await CompleteSnapshotAsync("big", 1024);
        var path = _temp.JournalPath("big");
        FlipByte(path, HeaderSize + (10 * RecordSize) + 7);

        var snapshot = _temp.Reopen().GetSnapshot("big")!;

        Assert.Equal(1024, snapshot.PresentChunks);
        Assert.True(snapshot.IsComplete);
        Assert.NotNull(snapshot.JournalDamage);
        Assert.Single(CorruptCopies("big"));
        Assert.Equal(HeaderSize + (1024 * RecordSize), new FileInfo(path).Length);
        Assert.Equal(Data(11, Page), ReadChunk(snapshot, 0, 10));
        Assert.Same(snapshot, _temp.Store.OpenSnapshot(offer));
    }

    [Fact]
    public async Task A_snapshot_that_lost_a_chunk_is_never_reported_complete()
    {
        await CompleteSnapshotAsync("big", 1024);
        FlipByte(_temp.JournalPath("big"), HeaderSize + (10 * RecordSize) + 7);
        // The chunk's own bytes are damaged too: neither its record nor the manifest can vouch for it.
        FlipByte(_temp.ObjectPath("big", 0), (10 * Page) + 5);

        var store = _temp.Reopen();
        var snapshot = store.GetSnapshot("big")!;

        Assert.Equal(1023, snapshot.PresentChunks);
        Assert.False(snapshot.IsPresent(0, 10));
        Assert.False(snapshot.IsComplete);
        Assert.False(Assert.Single(store.ListSnapshots()).IsComplete);
        Assert.Equal(0, store.GetStatistics().CompleteSnapshots);
        Assert.Equal(1023, (await store.VerifyAsync(TestContext.Current.CancellationToken)).ChunksChecked);
    }

    [Fact]
    public async Task A_journal_shorter_than_its_header_is_rebuilt_from_the_manifest()
    {
        await CompleteSnapshotAsync("big", 64);
        var path = _temp.JournalPath("big");
        using (var file = File.OpenWrite(path))
        {
            file.SetLength(HeaderSize - 9);
        }

        var snapshot = _temp.Reopen().GetSnapshot("big")!;

        Assert.Equal(64, snapshot.PresentChunks);
        Assert.True(snapshot.IsComplete);
        Assert.Contains("shorter than", snapshot.JournalDamage, StringComparison.Ordinal);
        Assert.Equal(HeaderSize - 9, new FileInfo(Assert.Single(CorruptCopies("big"))).Length);
        Assert.Equal(HeaderSize + (64 * RecordSize), new FileInfo(path).Length);
        Assert.True((await _temp.Store.VerifyAsync(TestContext.Current.CancellationToken)).IsClean);
    }

    [Fact]
    public async Task A_journal_shorter_than_its_header_without_a_manifest_holds_nothing()
    {
        await PutFlushedAsync(3);
        var path = _temp.JournalPath("s1");
        using (var file = File.OpenWrite(path))
        {
            file.SetLength(5);
        }

        var snapshot = _temp.Reopen().OpenSnapshot(_offer);

        Assert.Equal(0, snapshot.PresentChunks);
        Assert.False(snapshot.IsComplete);
        Assert.Single(CorruptCopies());
        Assert.Equal(HeaderSize, new FileInfo(path).Length);
        Put(snapshot, 0, 0, 1);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        Assert.Equal(1, _temp.Reopen().OpenSnapshot(_offer).PresentChunks);
    }

    [Fact]
    public async Task A_duplicate_record_of_the_other_kind_is_settled_by_the_bytes()
    {
        // Data at 0..4 and a zero chunk at 5, then valid (CRC-correct) records that contradict them:
        // "chunk 1 is zero" and "chunk 5 is data". The store never writes such records; they are damage.
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        var hashes = Enumerable.Range(0, 5).Select(i => Put(snapshot, 0, i, i + 1)).ToArray();
        snapshot.PutZero(0, 5);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        _temp.Store.Dispose();
        var path = _temp.JournalPath("s1");
        var journal = (await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken)).ToList();
        journal.InsertRange(HeaderSize + (2 * RecordSize), RecordBytes(new JournalRecord(0, 1, ChunkHash.ZeroMark)));
        journal.AddRange(RecordBytes(new JournalRecord(0, 5, hashes[3])));
        journal.AddRange(RecordBytes(new JournalRecord(0, 6, hashes[4])));
        await File.WriteAllBytesAsync(path, [.. journal], TestContext.Current.CancellationToken);

        var reopened = _temp.Reopen().OpenSnapshot(_offer);

        // Every record's claim is checked against the bytes: chunk 1 holds its data, chunk 5 is a hole,
        // chunk 6 was never written. The records after the contradiction are not dropped.
        Assert.Equal(6, reopened.PresentChunks);
        Assert.Equal(Data(2, Page), ReadChunk(reopened, 0, 1));
        Assert.Equal(Data(5, Page), ReadChunk(reopened, 0, 4));
        Assert.All(ReadChunk(reopened, 0, 5), b => Assert.Equal(0, b));
        Assert.False(reopened.IsPresent(0, 6));
        Assert.Contains("chunk 1", reopened.JournalDamage, StringComparison.Ordinal);
        Assert.Single(CorruptCopies());
        Assert.True((await _temp.Store.VerifyAsync(TestContext.Current.CancellationToken)).IsClean);
    }

    [Fact]
    public async Task A_repeated_record_of_the_same_kind_is_harmless()
    {
        await PutFlushedAsync(3);
        var path = _temp.JournalPath("s1");
        var journal = await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken);
        await File.WriteAllBytesAsync(path, [.. journal, .. journal.AsSpan(HeaderSize, RecordSize)], TestContext.Current.CancellationToken);

        var snapshot = _temp.Reopen().OpenSnapshot(_offer);

        Assert.Equal(3, snapshot.PresentChunks);
        Assert.Null(snapshot.JournalDamage);
        Assert.Empty(CorruptCopies());
    }

    [Fact]
    public async Task A_valid_record_naming_a_place_the_snapshot_lacks_is_damage_not_a_tail()
    {
        await PutFlushedAsync(3);
        var path = _temp.JournalPath("s1");
        var journal = (await File.ReadAllBytesAsync(path, TestContext.Current.CancellationToken)).ToList();
        journal.InsertRange(HeaderSize + RecordSize, RecordBytes(new JournalRecord(0, 99, ChunkHash.ZeroMark)));
        await File.WriteAllBytesAsync(path, [.. journal], TestContext.Current.CancellationToken);

        var snapshot = _temp.Reopen().OpenSnapshot(_offer);

        Assert.Equal(3, snapshot.PresentChunks);
        Assert.Contains("chunk 99", snapshot.JournalDamage, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Zeroed_tail_blocks_are_not_records()
    {
        // Some filesystems show a crashed append as zeros: the CRC of an all-zero record does not match.
        await PutFlushedAsync(2);
        using (var file = File.OpenWrite(_temp.JournalPath("s1")))
        {
            file.SetLength(file.Length + (3 * RecordSize));
        }
        Assert.Equal(2, _temp.Reopen().OpenSnapshot(_offer).PresentChunks);
    }

    [Fact]
    public async Task A_zero_put_on_a_resumed_place_hides_bytes_of_an_unjournaled_write()
    {
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        Put(snapshot, 0, 3, 7); // written, never flushed: absent after the reopen, bytes still in the file
        var reopened = _temp.Reopen().OpenSnapshot(_offer);
        Assert.False(reopened.IsPresent(0, 3));

        reopened.PutZero(0, 3);

        Assert.All(ReadChunk(reopened, 0, 3), b => Assert.Equal(0, b));
        await reopened.FlushAsync(TestContext.Current.CancellationToken);
        Assert.True((await _temp.Store.VerifyAsync(TestContext.Current.CancellationToken)).IsClean);
    }

    [Fact]
    public void A_journal_with_a_foreign_header_refuses_to_open()
    {
        _temp.Store.OpenSnapshot(_offer);
        _temp.Store.Dispose();
        FlipByte(_temp.JournalPath("s1"), 2);
        Assert.Throws<InvalidDataException>(() => _temp.Reopen());
    }

    [Fact]
    public void An_interrupted_creation_is_removed_on_open()
    {
        _temp.Store.Dispose();
        var orphan = Path.Combine(_temp.Directory, "snapshots", "half");
        Directory.CreateDirectory(orphan);
        File.WriteAllBytes(Path.Combine(orphan, "obj-0.raw"), new byte[10]);

        var store = _temp.Reopen();

        Assert.Empty(store.ListSnapshots());
        Assert.False(Directory.Exists(orphan));
    }

    [Fact]
    public async Task Killed_after_data_sync_before_journal_append_leaves_the_chunks_absent()
    {
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        Put(snapshot, 0, 0, 1);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        Put(snapshot, 0, 1, 2);
        Put(snapshot, 0, 2, 3);
        _temp.Options.FaultHook = point =>
        {
            if (point == StoreFaultPoints.AfterDataSync)
            {
                throw new SimulatedCrashException();
            }
        };

        await Assert.ThrowsAsync<SimulatedCrashException>(async () => await snapshot.FlushAsync(TestContext.Current.CancellationToken));
        _temp.Options.FaultHook = null;
        var reopened = _temp.Reopen().OpenSnapshot(_offer);

        Assert.Equal(1, reopened.PresentChunks);
        Assert.False(reopened.IsPresent(0, 1));
        // The data did reach the file; without a record it is simply not trusted.
        Assert.Single(_temp.Store.GetInventory());
    }

    [Fact]
    public async Task Killed_after_journal_append_before_its_sync_is_consistent_either_way()
    {
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        Put(snapshot, 0, 0, 1);
        Put(snapshot, 0, 1, 2);
        _temp.Options.FaultHook = point =>
        {
            if (point == StoreFaultPoints.AfterJournalAppend)
            {
                throw new SimulatedCrashException();
            }
        };

        await Assert.ThrowsAsync<SimulatedCrashException>(async () => await snapshot.FlushAsync(TestContext.Current.CancellationToken));
        _temp.Options.FaultHook = null;
        var reopened = _temp.Reopen().OpenSnapshot(_offer);

        // Without a power cut the appended records are in the page cache; with one they might not be.
        // Either way, everything present must read back its own bytes (the data was synced first).
        Assert.Contains(reopened.PresentChunks, new long[] { 0, 2 });
        var report = await _temp.Store.VerifyAsync(TestContext.Current.CancellationToken);
        Assert.True(report.IsClean);
        Assert.Equal(reopened.PresentChunks, report.ChunksChecked);
    }

    [Fact]
    public async Task A_failed_flush_keeps_its_records_for_the_next_flush()
    {
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        Put(snapshot, 0, 0, 1);
        var fail = true;
        _temp.Options.FaultHook = point =>
        {
            if (point == StoreFaultPoints.AfterDataSync && fail)
            {
                throw new IOException("simulated EIO", 5);
            }
        };
        await Assert.ThrowsAsync<IOException>(async () => await snapshot.FlushAsync(TestContext.Current.CancellationToken));
        fail = false;
        Put(snapshot, 0, 1, 2);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);

        var reopened = _temp.Reopen().OpenSnapshot(_offer);
        Assert.Equal(2, reopened.PresentChunks);
        Assert.Equal(HeaderSize + (2 * RecordSize), new FileInfo(_temp.JournalPath("s1")).Length);
    }

    [Fact]
    public async Task A_failed_fsync_stops_journaling_until_the_store_is_reopened()
    {
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        Put(snapshot, 0, 0, 1);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        Put(snapshot, 0, 1, 2);
        _temp.Options.FaultHook = point =>
        {
            if (point == StoreFaultPoints.DataSync)
            {
                throw new IOException("No space left on device", 28);
            }
        };
        var first = await Assert.ThrowsAsync<ChunkStoreIOException>(async () => await snapshot.FlushAsync(TestContext.Current.CancellationToken));
        Assert.True(first.IsDiskFull);
        _temp.Options.FaultHook = null;

        // A retried fsync may "succeed" after the kernel dropped the pages: the store must not believe it.
        var again = await Assert.ThrowsAsync<ChunkStoreIOException>(async () => await snapshot.FlushAsync(TestContext.Current.CancellationToken));
        Assert.Contains("reopen", again.Message, StringComparison.Ordinal);
        Assert.Equal(Data(2, Page), ReadChunk(snapshot, 0, 1));

        var reopened = _temp.Reopen().OpenSnapshot(_offer);
        Assert.Equal(1, reopened.PresentChunks);
        Put(reopened, 0, 1, 2);
        await reopened.FlushAsync(TestContext.Current.CancellationToken);
        Assert.Equal(2, _temp.Reopen().OpenSnapshot(_offer).PresentChunks);
    }

    [Fact]
    public async Task Disk_full_on_a_chunk_write_is_reported_and_the_store_stays_usable()
    {
        var snapshot = _temp.Store.OpenSnapshot(_offer);
        Put(snapshot, 0, 0, 1);
        _temp.Options.FaultHook = point =>
        {
            if (point == StoreFaultPoints.BeforeDataWrite)
            {
                throw new IOException("No space left on device", 28);
            }
        };

        var ex = Assert.Throws<ChunkStoreIOException>(() => Put(snapshot, 0, 1, 2));

        Assert.True(ex.IsDiskFull);
        Assert.Contains("disk full", ex.Message, StringComparison.Ordinal);
        Assert.Contains(_temp.ObjectPath("s1", 0), ex.Message, StringComparison.Ordinal);
        Assert.Equal(28, ex.HResult);
        Assert.False(snapshot.IsPresent(0, 1));
        Assert.Equal(Data(1, Page), ReadChunk(snapshot, 0, 0));
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);

        _temp.Options.FaultHook = null;
        Put(snapshot, 0, 1, 2);
        await snapshot.FlushAsync(TestContext.Current.CancellationToken);
        Assert.Equal(2, _temp.Reopen().OpenSnapshot(_offer).PresentChunks);
    }

    [Fact]
    public async Task Crossing_the_byte_threshold_flushes_in_the_background()
    {
        _temp.Options.FlushBytes = 2 * Page;
        var snapshot = _temp.Reopen().OpenSnapshot(_offer);
        Put(snapshot, 0, 0, 1);
        Put(snapshot, 0, 1, 2);
        await WaitForJournalAsync(2);
        Assert.Equal(2, _temp.Reopen().OpenSnapshot(_offer).PresentChunks);
    }

    [Fact]
    public async Task The_interval_flushes_a_quiet_snapshot()
    {
        _temp.Options.FlushInterval = TimeSpan.FromMilliseconds(20);
        var snapshot = _temp.Reopen().OpenSnapshot(_offer);
        Put(snapshot, 0, 3, 1);
        snapshot.PutZero(0, 4);
        await WaitForJournalAsync(2);
        Assert.Equal(2, _temp.Reopen().OpenSnapshot(_offer).PresentChunks);
    }

    private Task WaitForJournalAsync(int records)
    {
        // The background flush has no completion signal by design (Put never waits for it): its write to the journal is the event.
        var journal = _temp.JournalPath("s1");
        return FileWatch.UntilAsync(Path.GetDirectoryName(journal)!, () => new FileInfo(journal).Length >= HeaderSize + (records * RecordSize),
            TimeSpan.FromSeconds(20), () => "background flush did not happen", ct: TestContext.Current.CancellationToken);
    }

    private async Task<SnapshotOfferMessage> CompleteSnapshotAsync(string id, int chunks)
    {
        var offer = Offer(id, (0, chunks * (long)Page, Page));
        var snapshot = _temp.Store.OpenSnapshot(offer);
        var hashes = Enumerable.Range(0, chunks).Select(i => Put(snapshot, 0, i, i + 1)).ToArray();
        await snapshot.CompleteAsync([Root(hashes)], TestContext.Current.CancellationToken);
        Assert.True(snapshot.IsComplete);
        _temp.Store.Dispose();
        return offer;
    }

    private string[] CorruptCopies(string snapshotId = "s1") =>
        Directory.GetFiles(Path.GetDirectoryName(_temp.JournalPath(snapshotId))!, "journal.log.corrupt-*");

    private static byte[] RecordBytes(JournalRecord record)
    {
        var bytes = new byte[RecordSize];
        record.Write(bytes);
        return bytes;
    }

    private static void FlipByte(string path, long offset)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        file.Position = offset;
        var b = file.ReadByte();
        file.Position = offset;
        file.WriteByte((byte)(b ^ 0x40));
    }

    private sealed class SimulatedCrashException : Exception
    {
    }
}
