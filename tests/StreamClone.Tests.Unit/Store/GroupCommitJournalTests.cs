using System.Buffers.Binary;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared.Model;
using StreamClone.Store;
using StreamClone.Store.Journal;

namespace StreamClone.Tests.Unit.Store;

/// <summary>
/// The group-commit journal alone (no store, no snapshot): what a flush makes durable and in which
/// order, what replay makes of torn, damaged and hostile files, and appends racing flushes.
/// </summary>
public sealed class GroupCommitJournalTests : IDisposable
{
    private const int HeaderSize = JournalFormat.HeaderSize;
    private const int RecordSize = JournalRecord.Size;

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "sc-journal-" + Guid.NewGuid().ToString("N"));
    private readonly string _path;

    public GroupCommitJournalTests()
    {
        Directory.CreateDirectory(_directory);
        _path = Path.Combine(_directory, "journal.log");
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task Appended_records_round_trip_through_a_flush_and_a_replay_in_order()
    {
        var written = Records(0, 7);
        using (var journal = GroupCommitJournal.Create(_path, Options()))
        {
            Append(journal, written);
            Assert.Equal(7, journal.PendingRecords);
            Assert.Equal(HeaderSize, journal.DurableLength);

            await journal.FlushAsync(TestContext.Current.CancellationToken);

            Assert.Equal(0, journal.PendingRecords);
            Assert.Equal(HeaderSize + (7 * RecordSize), journal.DurableLength);
            Assert.Equal(written, ReadDurable(journal));
        }

        using var reopened = GroupCommitJournal.Open(_path, readOnly: false, Options());
        var replay = reopened.Replay();

        Assert.Null(replay.Damage);
        Assert.Null(replay.TornReason);
        Assert.Equal(7, replay.Records);
        Assert.Equal(written, ReadDurable(reopened));
    }

    [Fact]
    public async Task Records_reach_the_file_only_after_the_owners_data_sync()
    {
        var steps = new List<string>();
        var options = Options(
            syncData: () =>
            {
                // The journal on disk still ends at the previous group: nothing vouches for these bytes yet.
                steps.Add($"data sync, journal {new FileInfo(_path).Length} bytes");
                return 1;
            },
            faultHook: point => steps.Add($"{point}, journal {new FileInfo(_path).Length} bytes"));
        using var journal = GroupCommitJournal.Create(_path, options);
        Append(journal, Records(0, 2));
        await journal.FlushAsync(TestContext.Current.CancellationToken);
        Append(journal, Records(2, 1));
        await journal.FlushAsync(TestContext.Current.CancellationToken);

        Assert.Equal(
        [
            "data sync, journal 16 bytes", "AfterDataSync, journal 16 bytes", "AfterJournalAppend, journal 112 bytes",
            "data sync, journal 112 bytes", "AfterDataSync, journal 112 bytes", "AfterJournalAppend, journal 160 bytes",
        ], steps);
    }

    [Fact]
    public async Task A_flush_with_nothing_pending_syncs_nothing()
    {
        var syncs = 0;
        using var journal = GroupCommitJournal.Create(_path, Options(syncData: () => ++syncs));
        await journal.FlushAsync(TestContext.Current.CancellationToken);
        Assert.Equal(0, syncs);
        Assert.Equal(HeaderSize, new FileInfo(_path).Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_torn_last_record_is_cut_and_reported_at_every_byte(bool flipInsteadOfCut)
    {
        var written = Records(0, 3);
        await WriteJournalAsync(written);
        var full = await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken);
        var lastRecord = HeaderSize + (2 * RecordSize);

        // Cutting at lastRecord itself leaves two whole records and no tail: the cut starts one byte in.
        for (var at = flipInsteadOfCut ? lastRecord : lastRecord + 1; at < full.Length; at++)
        {
            var damaged = flipInsteadOfCut ? Flipped(full, at) : full[..at];
            await File.WriteAllBytesAsync(_path, damaged, TestContext.Current.CancellationToken);

            using (var journal = GroupCommitJournal.Open(_path, readOnly: false, Options()))
            {
                var replay = journal.Replay();

                Assert.Null(replay.Damage);
                Assert.Equal(flipInsteadOfCut ? "CRC mismatch" : "torn record", replay.TornReason);
                Assert.Equal(damaged.Length - lastRecord, replay.TornBytes);
                Assert.Equal(2, replay.Records);
                Assert.Equal(lastRecord, new FileInfo(_path).Length);
                Assert.Equal(written[..2], ReadDurable(journal));

                // Appends go on right after the cut, and the next replay reads them.
                journal.Append(written[2], 0);
                await journal.FlushAsync(TestContext.Current.CancellationToken);
            }
            Assert.Equal(full, await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken));
        }
    }

    [Fact]
    public async Task A_read_only_replay_reports_a_torn_tail_without_cutting_it()
    {
        await WriteJournalAsync(Records(0, 3));
        using (var file = File.OpenWrite(_path))
        {
            file.SetLength(file.Length - 5);
        }
        var before = await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken);

        using var journal = GroupCommitJournal.Open(_path, readOnly: true, Options());
        var replay = journal.Replay();

        Assert.Equal(2, replay.Records);
        Assert.Equal(RecordSize - 5, replay.TornBytes);
        Assert.Equal(before, await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken));
        Assert.Throws<InvalidOperationException>(() => journal.Append(Records(9, 1)[0], 0));
        Assert.Throws<InvalidOperationException>(() => journal.CopyAside());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(11)]
    [InlineData(47)]
    public async Task Damage_in_the_middle_is_reported_at_its_offset_and_nothing_is_cut(int byteInRecord)
    {
        var written = Records(0, 4);
        await WriteJournalAsync(written);
        var damaged = Flipped(await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken), HeaderSize + RecordSize + byteInRecord);
        await File.WriteAllBytesAsync(_path, damaged, TestContext.Current.CancellationToken);

        using var journal = GroupCommitJournal.Open(_path, readOnly: false, Options());
        var replay = journal.Replay();

        var damage = Assert.NotNull(replay.Damage);
        Assert.Equal(HeaderSize + RecordSize, damage.Offset);
        Assert.Contains("fails its CRC and valid records follow it", damage.Reason, StringComparison.Ordinal);
        Assert.Null(replay.TornReason);
        Assert.Equal(damaged, await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken));
        // Only the records before the damage are readable, and nothing is appended after damage until a rebuild.
        Assert.Equal(written[..1], ReadDurable(journal));
        Assert.Throws<InvalidOperationException>(() => journal.Append(written[1], 0));
    }

    [Fact]
    public async Task A_record_the_owner_refuses_is_damage_and_the_check_stops_there()
    {
        var written = Records(0, 5);
        await WriteJournalAsync(written);
        var checkedOffsets = new List<long>();

        using var journal = GroupCommitJournal.Open(_path, readOnly: false, Options());
        var replay = journal.Replay((offset, record) =>
        {
            checkedOffsets.Add(offset);
            return record == written[2] ? "not mine" : null;
        });

        Assert.Equal(new ReplayDamage(HeaderSize + (2 * RecordSize), "not mine"), replay.Damage);
        Assert.Equal(new long[] { HeaderSize, HeaderSize + RecordSize, HeaderSize + (2 * RecordSize) }, checkedOffsets);
        Assert.Equal(written[..2], ReadDurable(journal));
    }

    [Fact]
    public async Task Recovery_keeps_a_private_copy_and_rebuilds_a_journal_that_takes_appends()
    {
        var written = Records(0, 4);
        await WriteJournalAsync(written);
        var damaged = Flipped(await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken), HeaderSize + RecordSize + 3);
        await File.WriteAllBytesAsync(_path, damaged, TestContext.Current.CancellationToken);

        using (var journal = GroupCommitJournal.Open(_path, readOnly: false, Options()))
        {
            Assert.NotNull(journal.Replay().Damage);
            var copy = journal.CopyAside();
            var seen = new List<(long Offset, bool Valid)>();
            using (var rebuild = journal.BeginRebuild())
            {
                journal.ScanAll((offset, valid, record) =>
                {
                    seen.Add((offset, valid));
                    if (valid)
                    {
                        rebuild.Add(record);
                    }
                });
                Assert.Equal(3, rebuild.Records);
                rebuild.Commit();
            }

            Assert.Equal(new (long, bool)[] { (16, true), (64, false), (112, true), (160, true) }, seen);
            Assert.StartsWith(_path + GroupCommitJournal.CorruptCopyInfix, copy, StringComparison.Ordinal);
            Assert.Equal(damaged, await File.ReadAllBytesAsync(copy, TestContext.Current.CancellationToken));
            Assert.False(File.Exists(_path + ".tmp"));
            Assert.Equal([written[0], written[2], written[3]], ReadDurable(journal));

            journal.Append(written[1], 0);
            await journal.FlushAsync(TestContext.Current.CancellationToken);
        }

        using var reopened = GroupCommitJournal.Open(_path, readOnly: false, Options());
        var replay = reopened.Replay();
        Assert.Null(replay.Damage);
        Assert.Equal([written[0], written[2], written[3], written[1]], ReadDurable(reopened));
    }

    [Fact]
    public async Task An_abandoned_rebuild_leaves_the_journal_as_it_was()
    {
        await WriteJournalAsync(Records(0, 3));
        var damaged = Flipped(await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken), HeaderSize + 3);
        await File.WriteAllBytesAsync(_path, damaged, TestContext.Current.CancellationToken);

        using var journal = GroupCommitJournal.Open(_path, readOnly: false, Options());
        Assert.NotNull(journal.Replay().Damage);
        using (var rebuild = journal.BeginRebuild())
        {
            rebuild.Add(Records(0, 1)[0]);
        }

        Assert.False(File.Exists(_path + ".tmp"));
        Assert.Equal(damaged, await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(HeaderSize - 1)]
    public async Task A_file_shorter_than_its_header_is_damage_at_byte_0(int length)
    {
        await WriteJournalAsync(Records(0, 2));
        using (var file = File.OpenWrite(_path))
        {
            file.SetLength(length);
        }

        using var journal = GroupCommitJournal.Open(_path, readOnly: false, Options());
        var replay = journal.Replay();

        Assert.Equal(0, Assert.NotNull(replay.Damage).Offset);
        Assert.Contains("shorter than the 16-byte header", replay.Damage.Value.Reason, StringComparison.Ordinal);
        Assert.Empty(ReadDurable(journal));
        var scanned = 0;
        journal.ScanAll((_, _, _) => scanned++);
        Assert.Equal(0, scanned);
    }

    [Theory]
    [InlineData(0, 0x53)]       // magic
    [InlineData(7, 0x02)]       // another format
    [InlineData(8, 0x7fffffff)] // a record size of 2 GiB
    [InlineData(8, -1)]         // a negative record size
    [InlineData(8, 0)]
    public async Task A_foreign_header_is_refused_without_reading_on(int offset, int value)
    {
        await WriteJournalAsync(Records(0, 2));
        var bytes = await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken);
        if (offset == 8)
        {
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), value);
        }
        else
        {
            bytes[offset] ^= (byte)value;
        }
        await File.WriteAllBytesAsync(_path, bytes, TestContext.Current.CancellationToken);

        using var journal = GroupCommitJournal.Open(_path, readOnly: false, Options());
        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<InvalidDataException>(() => journal.Replay());
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Contains("bad header", error.Message, StringComparison.Ordinal);
        Assert.True(allocated < 64 << 10, $"{allocated} bytes allocated");
        Assert.Equal(bytes, await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task A_huge_journal_of_garbage_is_read_in_bounded_memory()
    {
        // 48 MiB (1 Mi records) after the header, sparse: zeros, which fail every CRC. Then a valid record at
        // the very end: damage, found only by reading the whole file, through one fixed block.
        const long garbage = RecordSize * (1L << 20);
        await WriteJournalAsync(Records(0, 1));
        var valid = (await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken))[HeaderSize..];
        using (var file = new FileStream(_path, FileMode.Open, FileAccess.Write))
        {
            file.SetLength(HeaderSize);
            file.SetLength(HeaderSize + garbage);
            file.Position = HeaderSize + garbage;
            file.Write(valid);
        }

        using var journal = GroupCommitJournal.Open(_path, readOnly: false, Options());
        var before = GC.GetAllocatedBytesForCurrentThread();
        var replay = journal.Replay();
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(HeaderSize, Assert.NotNull(replay.Damage).Offset);
        Assert.True(allocated < 1 << 20, $"{allocated} bytes allocated to replay {garbage} bytes");
    }

    [Fact]
    public async Task Appends_during_a_flush_go_into_the_next_group()
    {
        var inSync = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var release = new ManualResetEventSlim();
        var durableAtSync = new List<long>();
        GroupCommitJournal? journal = null;
        var options = Options(syncData: () =>
        {
            durableAtSync.Add(journal!.DurableLength);
            if (durableAtSync.Count == 1)
            {
                inSync.SetResult();
                release.Wait(TestContext.Current.CancellationToken);
            }
            return 0;
        });
        var written = Records(0, 4);
        journal = GroupCommitJournal.Create(_path, options);
        using (journal)
        {
            Append(journal, written[..2]);
            var first = Task.Run(() => journal.FlushAsync(TestContext.Current.CancellationToken).AsTask(), TestContext.Current.CancellationToken);
            await inSync.Task.WaitAsync(TestContext.Current.CancellationToken);

            // The first group is taken: these wait for the next one, and a flush asked for now covers them.
            Append(journal, written[2..]);
            Assert.Equal(2, journal.PendingRecords);
            var second = journal.FlushAsync(TestContext.Current.CancellationToken).AsTask();
            Assert.False(second.IsCompleted);
            release.Set();
            await first;
            await second;

            Assert.Equal(new long[] { HeaderSize, HeaderSize + (2 * RecordSize) }, durableAtSync);
            Assert.Equal(HeaderSize + (4 * RecordSize), journal.DurableLength);
            Assert.Equal(written, ReadDurable(journal));
        }
    }

    [Fact]
    public async Task Appends_racing_flushes_on_real_threads_lose_no_record_and_keep_each_threads_order()
    {
        const int threads = 4;
        const int perThread = 5000;
        // Background flushes every 64 records of "4 KiB" race the explicit flusher too.
        using var journal = GroupCommitJournal.Create(_path, Options(flushBytes: 64 * 4096));
        using var start = new Barrier(threads + 1);
        var appending = threads;
        var appenders = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait(TestContext.Current.CancellationToken);
            for (var i = 0; i < perThread; i++)
            {
                journal.Append(new JournalRecord(t, i, Hash(t, i)), 4096);
            }
            Interlocked.Decrement(ref appending);
        })).ToList();
        var flushes = 0;
        var flusher = new Thread(() =>
        {
            start.SignalAndWait(TestContext.Current.CancellationToken);
            do
            {
                journal.FlushAsync(TestContext.Current.CancellationToken).AsTask().GetAwaiter().GetResult();
                flushes++;
            }
            while (Volatile.Read(ref appending) > 0);
        });
        appenders.ForEach(a => a.Start());
        flusher.Start();
        appenders.ForEach(a => a.Join());
        flusher.Join();
        await journal.FlushAsync(TestContext.Current.CancellationToken);

        var next = new int[threads];
        using var reopened = GroupCommitJournal.Open(_path, readOnly: true, Options());
        Assert.Null(reopened.Replay().Damage);
        reopened.ReadDurable(record =>
        {
            // Each thread's records arrive exactly once and in the order it appended them.
            Assert.Equal(next[record.ObjectId], record.Index);
            Assert.Equal(Hash(record.ObjectId, record.Index), record.Hash);
            next[record.ObjectId]++;
        });
        Assert.All(next, n => Assert.Equal(perThread, n));
        Assert.Equal(HeaderSize + ((long)threads * perThread * RecordSize), new FileInfo(_path).Length);
    }

    [Fact]
    public async Task Crossing_the_byte_threshold_commits_in_the_background()
    {
        var synced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var syncs = 0;
        using var journal = GroupCommitJournal.Create(_path, Options(flushBytes: 2 * 4096, syncData: () =>
        {
            Interlocked.Increment(ref syncs);
            synced.TrySetResult();
            return 1;
        }));
        journal.Append(Records(0, 1)[0], 4096);
        Assert.Equal(0, Volatile.Read(ref syncs));
        journal.Append(Records(1, 1)[0], 4096);

        await synced.Task.WaitAsync(TestContext.Current.CancellationToken);
        // Waits for the background flush that took the group (nothing is left for this one).
        await journal.FlushAsync(TestContext.Current.CancellationToken);

        Assert.Equal(1, Volatile.Read(ref syncs));
        Assert.Equal(HeaderSize + (2 * RecordSize), journal.DurableLength);
    }

    [Fact]
    public async Task The_interval_commits_a_quiet_journal()
    {
        var synced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var journal = GroupCommitJournal.Create(_path, Options(flushInterval: TimeSpan.FromMilliseconds(20), syncData: () =>
        {
            synced.TrySetResult();
            return 0;
        }));
        journal.Append(Records(0, 1)[0], 0);

        await synced.Task.WaitAsync(TestContext.Current.CancellationToken);
        await journal.FlushAsync(TestContext.Current.CancellationToken);

        Assert.Equal(HeaderSize + RecordSize, journal.DurableLength);
    }

    [Fact]
    public async Task A_failed_flush_keeps_its_group_in_front_of_later_records()
    {
        var fail = true;
        var written = Records(0, 3);
        using (var journal = GroupCommitJournal.Create(_path, Options(faultHook: point =>
        {
            if (point == StoreFaultPoints.AfterJournalAppend && fail)
            {
                throw new IOException("simulated EIO", 5);
            }
        })))
        {
            Append(journal, written[..2]);
            await Assert.ThrowsAsync<IOException>(async () => await journal.FlushAsync(TestContext.Current.CancellationToken));
            Assert.Equal(HeaderSize, journal.DurableLength);
            fail = false;
            journal.Append(written[2], 0);
            await journal.FlushAsync(TestContext.Current.CancellationToken);
        }

        using var reopened = GroupCommitJournal.Open(_path, readOnly: false, Options());
        reopened.Replay();
        Assert.Equal(written, ReadDurable(reopened));
    }

    [Fact]
    public async Task A_failed_data_sync_stops_the_journal_for_good()
    {
        var syncs = 0;
        using var journal = GroupCommitJournal.Create(_path, Options(syncData: () =>
        {
            syncs++;
            throw new IOException("No space left on device", 28);
        }));
        journal.Append(Records(0, 1)[0], 4096);

        var first = await Assert.ThrowsAsync<ChunkStoreIOException>(async () => await journal.FlushAsync(TestContext.Current.CancellationToken));
        var again = await Assert.ThrowsAsync<ChunkStoreIOException>(async () => await journal.FlushAsync(TestContext.Current.CancellationToken));

        Assert.True(first.IsDiskFull);
        Assert.Contains("reopen", again.Message, StringComparison.Ordinal);
        // A retried fsync may "succeed" after the kernel dropped the pages: it is not even tried.
        Assert.Equal(1, syncs);
        Assert.Equal(1, journal.PendingRecords);
        Assert.Equal(HeaderSize, new FileInfo(_path).Length);
    }

    [Fact]
    public async Task A_closed_journal_refuses_flushes_and_drops_what_was_pending()
    {
        var journal = GroupCommitJournal.Create(_path, Options());
        Append(journal, Records(0, 2));
        journal.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await journal.FlushAsync(TestContext.Current.CancellationToken));
        Assert.Equal(HeaderSize, new FileInfo(_path).Length);
    }

    [Fact]
    [SupportedOSPlatform("linux")]
    public async Task Every_file_the_journal_writes_is_0600()
    {
        await WriteJournalAsync(Records(0, 3));
        await File.WriteAllBytesAsync(_path, Flipped(await File.ReadAllBytesAsync(_path, TestContext.Current.CancellationToken), HeaderSize + 2),
            TestContext.Current.CancellationToken);
        File.SetUnixFileMode(_path, (UnixFileMode)0b110_100_100);

        using var journal = GroupCommitJournal.Open(_path, readOnly: false, Options());
        Assert.NotNull(journal.Replay().Damage);
        var copy = journal.CopyAside();
        using (var rebuild = journal.BeginRebuild())
        {
            rebuild.Commit();
        }

        Assert.Equal((UnixFileMode)0b110_000_000, File.GetUnixFileMode(_path));
        Assert.Equal((UnixFileMode)0b110_000_000, File.GetUnixFileMode(copy));
        File.Delete(_path);
        using (GroupCommitJournal.Create(_path, Options()))
        {
            Assert.Equal((UnixFileMode)0b110_000_000, File.GetUnixFileMode(_path));
        }
    }

    private static GroupCommitOptions Options(
        Func<int>? syncData = null, Action<string>? faultHook = null, long flushBytes = long.MaxValue, TimeSpan? flushInterval = null) => new()
        {
            Owner = "journal-test",
            Logger = NullLogger.Instance,
            SyncData = syncData ?? (() => 0),
            FaultHook = () => faultHook,
            FlushBytes = flushBytes,
            FlushInterval = flushInterval ?? Timeout.InfiniteTimeSpan,
        };

    private async Task WriteJournalAsync(JournalRecord[] records)
    {
        using var journal = GroupCommitJournal.Create(_path, Options());
        Append(journal, records);
        await journal.FlushAsync(TestContext.Current.CancellationToken);
    }

    private static void Append(GroupCommitJournal journal, IEnumerable<JournalRecord> records)
    {
        foreach (var record in records)
        {
            journal.Append(record, record.Hash.IsZeroMark ? 0 : 4096);
        }
    }

    private static List<JournalRecord> ReadDurable(GroupCommitJournal journal)
    {
        var records = new List<JournalRecord>();
        journal.ReadDurable(records.Add);
        return records;
    }

    /// <summary>Data records for places first.. of object 1, every third a zero chunk.</summary>
    private static JournalRecord[] Records(int first, int count) =>
        [.. Enumerable.Range(first, count).Select(i => new JournalRecord(1, i, i % 3 == 2 ? ChunkHash.ZeroMark : Hash(1, i)))];

    private static ChunkHash Hash(int objectId, long index)
    {
        Span<byte> seed = stackalloc byte[12];
        BinaryPrimitives.WriteInt32LittleEndian(seed, objectId);
        BinaryPrimitives.WriteInt64LittleEndian(seed[4..], index);
        return ChunkHash.Compute(seed);
    }

    private static byte[] Flipped(byte[] bytes, int offset)
    {
        var copy = (byte[])bytes.Clone();
        copy[offset] ^= 0x40;
        return copy;
    }
}
