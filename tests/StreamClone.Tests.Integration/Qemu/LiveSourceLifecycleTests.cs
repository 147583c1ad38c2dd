using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Qemu;
using StreamClone.Shared;
using StreamClone.Source;
using StreamClone.Source.Live;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>
/// The live source's lifecycle (<see cref="LiveSource"/>) against a real guest, in process: the work directory it
/// makes, the disk views it holds while serving, and what it leaves when it ends — the VM running on its own block
/// graph, nothing of ours on disk. (The failure paths at process level are in LiveSourceFailureTests; the serve
/// policy without QEMU in the unit tests' LiveSourceTests.)
/// </summary>
[Collection(QemuCollection.Name)]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class LiveSourceLifecycleTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_live_source_serves_its_snapshot_then_releases_its_disk_views_and_the_work_dir_it_made_and_the_VM_runs_on()
    {
        using var dir = new TempDir();
        var sourceQmp = dir.File("source-qmp.sock");
        await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with
        {
            ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"],
        }, ct: Ct);
        await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= 3, TimeSpan.FromSeconds(60), 0, Ct);
        var graphBefore = await GraphAsync(vm.Qmp);

        string workDir;
        await using (var live = await LiveSource.StartAsync(new LiveSourceSettings { QmpSocketPath = sourceQmp, SnapshotId = "lifecycle" }, NullLogger.Instance, Ct))
        {
            // A new private directory, made for this source.
            workDir = live.WorkDirectory;
            Assert.StartsWith(Path.Combine(Path.GetTempPath(), "streamclone-live-"), workDir, StringComparison.Ordinal);
            Assert.Equal(VmStateModes.Directory, File.GetUnixFileMode(workDir));
            // The disks are read through views added to the VM's block graph while the snapshot is served.
            Assert.NotEqual(graphBefore, await GraphAsync(vm.Qmp));

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            await using var server = new SourceServer(live.Input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
            var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
            var serving = live.ServeAsync(server, stop);
            using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
            await using (var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, Ct))
            {
                await session.RunAsync().WaitAsync(TimeSpan.FromMinutes(3), Ct);
                Assert.True(session.Snapshot.IsComplete);
            }
            var summary = await live.SummaryAsync();
            Assert.True(summary.MemoryBytes >= 256L << 20, summary.ToString());
            Assert.True(summary.DiskBytes > 0, summary.ToString());
            Assert.False(serving.IsCompleted, "a complete snapshot is served until the source is stopped");

            await stop.CancelAsync();
            await serving.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        }

        // Ended: the views are gone (the block graph is as before the snapshot), and so is the directory made for it.
        Assert.Equal(graphBefore, await GraphAsync(vm.Qmp));
        Assert.False(Directory.Exists(workDir), $"{workDir} outlived the source");
        Assert.Equal("running", (await vm.Qmp.ExecuteAsync("query-status", null, Ct)).GetProperty("status").GetString());
        var last = vm.GetConsoleLines().Where(GuestLine.IsTick).Select(GuestLine.Parse).Last();
        var next = GuestLine.Parse(await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= last.Tick + 2, TimeSpan.FromSeconds(30), 0, Ct));
        Assert.True(next.Ok, next.ToString());
    }

    private static async Task<List<string>> GraphAsync(QmpClient qmp) =>
        [.. (await BlockGraph.QueryNodesAsync(qmp, Ct)).Select(n => n.ToString())];
}
