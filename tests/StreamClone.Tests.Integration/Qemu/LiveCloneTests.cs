using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Clone;
using StreamClone.Qemu;
using StreamClone.Store;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>
/// The end to end: a real guest counts under TCG; `source --qmp` snapshots it live (disk and
/// memory, copy-on-write) and streams it to a `sink` process over loopback; a clone restored from the
/// sink's store continues from the snapshot with intact memory and disk, and the source never stopped.
/// </summary>
[Collection(QemuCollection.Name)]
public class LiveCloneTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_live_snapshot_streamed_source_to_sink_restores_a_clone_that_continues_while_the_source_runs_on()
    {
        using var dir = new TempDir();
        // A second QMP monitor for the source process: the launcher keeps the first one (one client per monitor).
        var sourceQmp = dir.File("source-qmp.sock");
        await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with
        {
            ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"],
        }, ct: Ct);
        await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= 5, TimeSpan.FromSeconds(60), 0, Ct);

        var eventsBefore = vm.Qmp.LastEventSequence;
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--qmp", sourceQmp, "--work-dir", dir.File("live"), "--sessions", "1", "--log-level", "Information");
        await using var _ = source;
        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json");
        Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(5)) == 0, $"sink:\n{sink.Stderr}\nsource:\n{source.Stderr}");
        Assert.True(await source.WaitAsync(TimeSpan.FromMinutes(1)) == 0, source.Stderr);
        using var report = JsonDocument.Parse(source.LastLine);
        var live = report.RootElement.GetProperty("live");
        TestContext.Current.SendDiagnosticMessage($"live snapshot: {live}");
        Assert.True(live.GetProperty("memory_bytes").GetInt64() >= 256L << 20);
        Assert.True(live.GetProperty("disk_bytes").GetInt64() > 0);

        // The guest was paused only for the instant that makes disk and memory one snapshot: QEMU's own STOP and RESUME
        // timestamps (normally ~15 ms apart) bound it, whatever the source reports. Tick numbers alone cannot show a
        // pause: the guest's clock stops with it, so its ticks stay consecutive.
        var stop = await vm.Qmp.WaitForEventAsync("STOP", eventsBefore, null, TimeSpan.FromSeconds(30), Ct);
        var resume = await vm.Qmp.WaitForEventAsync("RESUME", stop.Sequence, null, TimeSpan.FromSeconds(30), Ct);
        var pause = resume.Timestamp - stop.Timestamp;
        TestContext.Current.SendDiagnosticMessage($"guest paused {pause.TotalMilliseconds:F1} ms (QMP STOP → RESUME)");
        Assert.True(pause < MaxPause, $"the guest was paused {pause.TotalMilliseconds:F0} ms (STOP #{stop.Sequence} → RESUME #{resume.Sequence})");

        // The source kept counting through the snapshot: no gap of a second between its ticks (100 ms apart).
        var sourceTicks = vm.GetConsoleLines().Where(GuestLine.IsTick).Select(GuestLine.Parse).ToList();
        await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= sourceTicks[^1].Tick + 3, TimeSpan.FromSeconds(30), 0, Ct);
        sourceTicks = [.. vm.GetConsoleLines().Where(GuestLine.IsTick).Select(GuestLine.Parse)];
        Assert.All(sourceTicks.Zip(sourceTicks.Skip(1)), pair => Assert.Equal(pair.First.Tick + 1, pair.Second.Tick));

        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        var snapshot = Assert.Single(store.ListSnapshots());
        Assert.True(snapshot.IsComplete);
        await using var clone = await CloneRestorer.RestoreAsync(store.GetSnapshot(snapshot.SnapshotId)!, fixture.Tcg(), dir.File("clone"), NullLogger.Instance, Ct);
        var first = GuestLine.Parse(await clone.Vm.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(60), ct: Ct));

        // The clone continues the sequence from the snapshot instant with the same memory and disk state
        // the source had at that tick, and its own check of every filled page passes.
        var twin = sourceTicks.SingleOrDefault(t => t.Tick == first.Tick);
        Assert.NotNull(twin);
        Assert.True(first.Ok, first.ToString());
        Assert.Equal(twin.Mem, first.Mem);
        Assert.Equal(twin.Disk, first.Disk);
        var later = GuestLine.Parse(await clone.Vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= first.Tick + 3, TimeSpan.FromSeconds(60), 0, Ct));
        Assert.True(later.Ok, later.ToString());

        // Every filled page, not the rolling window above: the clone recomputes the CRC of each page from its memory,
        // and that must be the running checksum the source printed at the same tick.
        var asked = clone.Vm.ConsoleLineCount;
        await clone.Vm.WriteConsoleLineAsync(GuestFullPass.Request, Ct);
        var full = GuestFullPass.Parse(await clone.Vm.WaitForConsoleAsync(GuestFullPass.Is, TimeSpan.FromSeconds(120), asked, Ct));
        Assert.Equal(fixture.Tcg().FillMiB * (1L << 20) / 4096, full.Pages);
        var sourceAtFull = GuestLine.Parse(await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick == full.Tick, TimeSpan.FromSeconds(60), 0, Ct));
        Assert.True(sourceAtFull.Mem == full.Mem,
            $"clone's memory at tick {full.Tick} recomputed from all {full.Pages} pages is {full.Mem}, the source's was {sourceAtFull.Mem}");
    }

    /// <summary>Generous against the ~15 ms a live snapshot stops the guest (README figures), far below a stalled pause.</summary>
    private static readonly TimeSpan MaxPause = TimeSpan.FromSeconds(1);
}
