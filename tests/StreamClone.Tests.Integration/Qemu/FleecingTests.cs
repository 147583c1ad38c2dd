using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Qemu;
using StreamClone.Shared.Model;
using StreamClone.Store;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>
/// Issue 6, finding 10: `source --qmp` leaves the VM as it was. A VM started from a plain `-drive` command line
/// (automatic node names) is snapshotted twice while it runs; after each snapshot its block graph is what it was
/// before and QEMU holds no file of ours, the guest's disk checks stay good throughout, its writes keep landing in
/// its own image, and the second snapshot sends much less than the first (the sink keeps the first).
/// </summary>
[Collection(QemuCollection.Name)]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class FleecingTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_plain_drive_VM_snapshotted_twice_keeps_its_block_graph_and_its_own_disk_and_the_second_snapshot_sends_what_changed()
    {
        using var dir = new TempDir();
        var disk = dir.File("disk.raw");
        File.Copy(fixture.Guest.DiskPath, disk);
        var testQmp = dir.File("qmp.sock");
        var sourceQmp = dir.File("source-qmp.sock");
        await using var vm = PlainQemu.Start(fixture.Guest.KernelPath, fixture.Guest.InitrdPath, [$"file={disk},format=raw"], [testQmp, sourceQmp]);
        await vm.TickAtLeastAsync(5, Ct);
        await using var qmp = await QmpClient.ConnectAsync(testQmp, ct: Ct);
        var before = await GraphAsync(qmp);
        Assert.Contains(before, n => n.Contains("NodeName = #block", StringComparison.Ordinal));

        var liveDir = dir.File("live");
        var store = dir.File("store");
        var first = await SnapshotAsync(dir, sourceQmp, store, ["--work-dir", liveDir]);
        await AssertLeftAsItWasAsync(qmp, vm, before, liveDir);
        var tickAfterFirst = vm.Ticks[^1].Tick;

        await vm.TickAtLeastAsync(tickAfterFirst + 20, Ct);
        // The default work dir this time: a fresh private temp dir, gone afterwards.
        var second = await SnapshotAsync(dir, sourceQmp, store, []);
        await AssertLeftAsItWasAsync(qmp, vm, before, "streamclone-live-");
        TestContext.Current.SendDiagnosticMessage($"graph before and after each snapshot: {string.Join(", ", before)}; wire bytes: first {first}, second {second}");
        Assert.True(second * 4 < first, $"second snapshot sent {second} bytes, the first {first}");

        // The guest's own checks (it re-reads its disk file each tick) held throughout, ticks never skipped.
        var last = await vm.TickAtLeastAsync(vm.Ticks[^1].Tick + 5, Ct);
        var ticks = vm.Ticks;
        Assert.All(ticks, t => Assert.True(t.Ok, t.ToString()));
        Assert.All(ticks.Zip(ticks.Skip(1)), p => Assert.Equal(p.First.Tick + 1, p.Second.Tick));

        // Its writes since the snapshots are in its own image: after a clean quit, disk.raw holds the record
        // of a tick written after the second snapshot (each tick writes "tick=%020llu" and fdatasyncs).
        await qmp.QuitAsync(TimeSpan.FromSeconds(30));
        await vm.WaitForExitAsync(TimeSpan.FromSeconds(30));
        var record = Encoding.ASCII.GetBytes($"tick={last.Tick:D20}");
        Assert.True((await File.ReadAllBytesAsync(disk, Ct)).AsSpan().IndexOf(record) >= 0,
            $"the record of tick {last.Tick} (after both snapshots) is not in the VM's own disk image");
    }

    [Fact]
    public async Task A_VM_with_a_raw_and_a_qcow2_disk_is_snapshotted_whole_and_keeps_its_block_graph_when_the_source_is_interrupted()
    {
        using var dir = new TempDir();
        var disk = dir.File("disk.raw");
        File.Copy(fixture.Guest.DiskPath, disk);
        // A second disk in qcow2 the guest does not touch: its first MiB is 0x5a, the rest never written.
        var extra = dir.File("extra.qcow2");
        await ExternalTool.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", extra, "16M");
        await ExternalTool.RunAsync("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", extra);
        var testQmp = dir.File("qmp.sock");
        var sourceQmp = dir.File("source-qmp.sock");
        await using var vm = PlainQemu.Start(fixture.Guest.KernelPath, fixture.Guest.InitrdPath, [$"file={disk},format=raw", $"file={extra},format=qcow2"], [testQmp, sourceQmp]);
        await vm.TickAtLeastAsync(5, Ct);
        await using var qmp = await QmpClient.ConnectAsync(testQmp, ct: Ct);
        var before = await GraphAsync(qmp);

        // Served until Ctrl+C this time (no --sessions): the views go when the source is interrupted.
        var store = dir.File("store");
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--qmp", sourceQmp, "--work-dir", dir.File("live"));
        await using (source)
        {
            await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json");
            Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(5)) == 0, $"sink:\n{sink.Stderr}\nsource:\n{source.Stderr}");
            Assert.False(source.HasExited, source.Stderr);
            await ExternalTool.RunAsync("kill", "-INT", source.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var exit = await source.WaitAsync(TimeSpan.FromSeconds(60));
            TestContext.Current.SendDiagnosticMessage($"source interrupted: exit {exit}");
            Assert.DoesNotContain(" at StreamClone.", source.Stderr, StringComparison.Ordinal);
        }
        await AssertLeftAsItWasAsync(qmp, vm, before, dir.File("live"));
        Assert.False(Directory.Exists(dir.File("live")), "the work dir the source created is removed when it exits");

        using var chunks = ChunkStore.Open(store, NullLogger.Instance);
        var snapshot = chunks.GetSnapshot(Assert.Single(chunks.ListSnapshots()).SnapshotId)!;
        Assert.True(snapshot.IsComplete);
        var disks = snapshot.Objects.Where(o => o.Kind == ObjectKind.Disk).ToList();
        Assert.Equal(["disk.raw", "extra.qcow2"], disks.Select(d => d.Name));
        var second = disks[1];
        Assert.Equal(16L << 20, second.Size);
        // The guest's view of the qcow2 disk, not its file: the pattern, then zeros.
        var content = new byte[second.Size];
        snapshot.Read(second.Id, 0, content);
        Assert.True(content.AsSpan(0, 1 << 20).IndexOfAnyExcept((byte)0x5a) < 0, "the written MiB differs");
        Assert.True(content.AsSpan(1 << 20).IndexOfAnyExcept((byte)0) < 0, "the unwritten rest is not zero");
        var last = await vm.TickAtLeastAsync(vm.Ticks[^1].Tick + 3, Ct);
        Assert.All(vm.Ticks, t => Assert.True(t.Ok, t.ToString()));
        TestContext.Current.SendDiagnosticMessage($"two disks, graph before and after: {string.Join(", ", before)}; last tick {last}");
    }

    [Fact]
    public async Task The_views_a_killed_source_left_are_removed_by_the_next_snapshot_of_the_VM()
    {
        using var dir = new TempDir();
        var disk = dir.File("disk.raw");
        File.Copy(fixture.Guest.DiskPath, disk);
        var testQmp = dir.File("qmp.sock");
        var sourceQmp = dir.File("source-qmp.sock");
        await using var vm = PlainQemu.Start(fixture.Guest.KernelPath, fixture.Guest.InitrdPath, [$"file={disk},format=raw"], [testQmp, sourceQmp]);
        await vm.TickAtLeastAsync(5, Ct);
        await using var qmp = await QmpClient.ConnectAsync(testQmp, ct: Ct);
        var before = await GraphAsync(qmp);

        // SIGKILL runs no cleanup: the filter, the scratch node and file, the export and the NBD server stay behind.
        var (killed, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--qmp", sourceQmp, "--work-dir", dir.File("killed"));
        await using (killed)
        {
            await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json");
            Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(5)) == 0, $"sink:\n{sink.Stderr}\nsource:\n{killed.Stderr}");
            killed.Kill();
        }
        Assert.NotEqual(before, await GraphAsync(qmp));
        Assert.NotEmpty(Directory.GetFiles(dir.File("killed"), "scfl-*.qcow2"));

        await SnapshotAsync(dir, sourceQmp, dir.File("store"), ["--work-dir", dir.File("live")]);
        await AssertLeftAsItWasAsync(qmp, vm, before, dir.File("killed"));
        Assert.Empty(Directory.GetFiles(dir.File("killed"), "scfl-*.qcow2"));
        Assert.All(vm.Ticks, t => Assert.True(t.Ok, t.ToString()));
    }


    /// <summary>Finding 8: a given work dir that others can write is refused before the VM is touched, in one line.</summary>
    [Fact]
    public async Task A_world_writable_work_dir_is_refused_with_one_line_before_the_VM_is_touched()
    {
        using var dir = new TempDir();
        var qmpPath = dir.File("qmp.sock");
        // Never connected to: the refusal comes first.
        await File.WriteAllTextAsync(qmpPath, "", Ct);
        var work = dir.File("open");
        Directory.CreateDirectory(work);
        File.SetUnixFileMode(work, (UnixFileMode)0b111_111_111);
        await using var source = StreamCloneProcess.Start("source", "--qmp", qmpPath, "--work-dir", work, "--listen", "127.0.0.1:0");
        Assert.Equal(1, await source.WaitAsync(TimeSpan.FromSeconds(60)));
        var lines = source.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal($"streamclone: work dir {work} is writable by group or others (mode 777): refusing it; chmod 700 it or give another", Assert.Single(lines));
    }

    private static async Task<List<string>> GraphAsync(QmpClient qmp) =>
        [.. (await BlockGraph.QueryNodesAsync(qmp, Ct)).Select(n => n.ToString())];

    /// <summary>One `source --qmp` snapshot streamed to a sink into <paramref name="store"/>; returns the session's wire bytes.</summary>
    private static async Task<long> SnapshotAsync(TempDir dir, string sourceQmp, string store, string[] extra)
    {
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, ["--qmp", sourceQmp, "--sessions", "1", .. extra]);
        await using var _ = source;
        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json");
        Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(5)) == 0, $"sink:\n{sink.Stderr}\nsource:\n{source.Stderr}");
        Assert.True(await source.WaitAsync(TimeSpan.FromMinutes(1)) == 0, source.Stderr);
        using var report = JsonDocument.Parse(source.LastLine);
        var session = Assert.Single(report.RootElement.GetProperty("sessions").EnumerateArray());
        Assert.True(session.GetProperty("completed").GetBoolean(), session.ToString());
        return session.GetProperty("wire_bytes").GetInt64();
    }

    /// <summary>The block graph equals <paramref name="before"/>, no job or export is left, and QEMU holds no file or socket of ours.</summary>
    private static async Task AssertLeftAsItWasAsync(QmpClient qmp, PlainQemu vm, List<string> before, string ourPathPart)
    {
        Assert.Equal(before, await GraphAsync(qmp));
        Assert.Empty((await qmp.ExecuteAsync("query-block-jobs", null, Ct)).EnumerateArray());
        Assert.Empty((await qmp.ExecuteAsync("query-block-exports", null, Ct)).EnumerateArray());
        var ours = vm.OpenFiles().Where(f => f.Contains(ourPathPart, StringComparison.Ordinal) || f.Contains("scfl-", StringComparison.Ordinal)).ToList();
        Assert.True(ours.Count == 0, $"QEMU still holds: {string.Join(", ", ours)}");
    }
}
