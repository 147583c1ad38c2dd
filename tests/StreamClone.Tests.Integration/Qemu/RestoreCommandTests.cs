using StreamClone.Qemu;
using StreamClone.TestGuest;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>
/// `restore` as a process, on a store that holds a real live snapshot of the test guest (made once per class): it
/// starts a clone that runs on, and every way it cannot ends it with one line naming the cause, never a stack trace.
/// </summary>
[Collection(QemuCollection.Name)]
public class RestoreCommandTests(QemuFixture fixture, RestoreCommandTests.LiveStore live) : IClassFixture<RestoreCommandTests.LiveStore>
{
    [Fact]
    public async Task Restore_starts_a_clone_from_the_store_that_continues_the_guests_ticks()
    {
        await using var restore = StreamCloneProcess.Start("restore", "--store", live.StorePath, "--guest", fixture.Guest.Directory, "--seconds", "4");
        Assert.True(await restore.WaitAsync(TimeSpan.FromMinutes(3)) == 0, restore.Stderr);
        var lines = restore.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains(lines, l => l.StartsWith($"clone of {live.SnapshotId} running after ", StringComparison.Ordinal));
        var ticks = lines.Where(l => l.StartsWith("clone | ", StringComparison.Ordinal)).Select(l => l["clone | ".Length..])
            .Where(GuestLine.IsTick).Select(GuestLine.Parse).ToList();
        // The clone goes on from the snapshot instant (past the ticks the source had printed before it), with its checks passing.
        Assert.True(ticks.Count >= 2, restore.Stdout);
        Assert.True(ticks[0].Tick > live.TicksBeforeSnapshot, $"first clone tick {ticks[0].Tick}, source was at {live.TicksBeforeSnapshot} before the snapshot");
        Assert.All(ticks.Zip(ticks.Skip(1)), pair => Assert.Equal(pair.First.Tick + 1, pair.Second.Tick));
        Assert.All(ticks, t => Assert.True(t.Ok, t.ToString()));
    }

    [Fact]
    public async Task Restore_runs_a_machine_given_by_kernel_initrd_and_append_without_the_test_guest()
    {
        // The kernel and initrd the source booted, copied out of the guest directory: the machine is described, not the guest.
        using var dir = new TempDir();
        File.Copy(fixture.Guest.KernelPath, dir.File("vmlinuz"));
        File.Copy(fixture.Guest.InitrdPath, dir.File("initrd"));
        await using var restore = StreamCloneProcess.Start("restore", "--store", live.StorePath,
            "--kernel", dir.File("vmlinuz"), "--initrd", dir.File("initrd"), "--append", "console=ttyS0 quiet", "--seconds", "3");
        Assert.True(await restore.WaitAsync(TimeSpan.FromMinutes(3)) == 0, restore.Stderr);
        var ticks = restore.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Where(l => l.StartsWith("clone | ", StringComparison.Ordinal)).Select(l => l["clone | ".Length..])
            .Where(GuestLine.IsTick).Select(GuestLine.Parse).ToList();
        Assert.True(ticks.Count >= 1, restore.Stdout);
        Assert.True(ticks[0].Tick > live.TicksBeforeSnapshot, $"first clone tick {ticks[0].Tick}, source was at {live.TicksBeforeSnapshot}");
        Assert.All(ticks, t => Assert.True(t.Ok, t.ToString()));
    }

    [Fact]
    public async Task Restore_refuses_a_guest_and_a_kernel_together_and_a_missing_kernel_with_one_line()
    {
        await using var both = StreamCloneProcess.Start("restore", "--store", live.StorePath, "--guest", fixture.Guest.Directory, "--kernel", fixture.Guest.KernelPath);
        Assert.NotEqual(0, await both.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Contains("not both", both.Stderr, StringComparison.Ordinal);

        var error = await RestoreFailsAsync(live.StorePath, NoEnvironment, guest: false, "--kernel", "/nonexistent/vmlinuz");
        Assert.Equal("streamclone: /nonexistent/vmlinuz does not exist", error);
    }

    [Fact]
    public async Task A_clone_with_less_memory_than_the_source_is_refused_by_qemu_with_one_line_naming_the_mismatch()
    {
        var error = await RestoreFailsAsync(live.StorePath, NoEnvironment, "--memory", "128M");
        Assert.Contains("refused the migration stream", error, StringComparison.Ordinal);
        Assert.Contains("pc.ram", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failing_qemu_img_ends_the_restore_with_one_line_naming_it()
    {
        using var dir = new TempDir();
        var fake = dir.File("qemu-img");
        await File.WriteAllTextAsync(fake, "#!/bin/sh\necho 'qemu-img: simulated failure' >&2\nexit 1\n");
        await ExternalTool.RunAsync("chmod", "+x", fake);
        var path = $"{dir.Path}:{Environment.GetEnvironmentVariable("PATH")}";
        var error = await RestoreFailsAsync(live.StorePath, new Dictionary<string, string> { ["PATH"] = path });
        Assert.Contains("qemu-img", error, StringComparison.Ordinal);
        Assert.Contains("simulated failure", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_snapshot_without_its_manifest_is_not_restored()
    {
        using var dir = new TempDir();
        var store = await CopyStoreAsync(live.StorePath, dir.File("store"));
        File.Delete(Path.Combine(store, "snapshots", live.SnapshotId, "manifest.msgpack"));
        var error = await RestoreFailsAsync(store, NoEnvironment, "--snapshot", live.SnapshotId);
        Assert.Contains("not complete", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_damaged_manifest_ends_the_restore_with_one_line()
    {
        using var dir = new TempDir();
        var store = await CopyStoreAsync(live.StorePath, dir.File("store"));
        var manifest = Path.Combine(store, "snapshots", live.SnapshotId, "manifest.msgpack");
        var bytes = await File.ReadAllBytesAsync(manifest);
        await File.WriteAllBytesAsync(manifest, bytes[..(bytes.Length / 2)]);
        var error = await RestoreFailsAsync(store, NoEnvironment, "--snapshot", live.SnapshotId);
        Assert.Contains("manifest is damaged", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_snapshot_of_image_files_has_no_device_state_and_is_not_restored()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 4 << 20, seed: 3);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", $"{image}:memory", "--sessions", "1");
        await using (source)
        {
            await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json");
            Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(2)) == 0, sink.Stderr);
        }
        var error = await RestoreFailsAsync(dir.File("store"), NoEnvironment);
        Assert.Contains("no device-state object", error, StringComparison.Ordinal);
    }

    private static readonly Dictionary<string, string> NoEnvironment = [];

    /// <summary>Runs `restore` expecting exit code 1 and exactly one error line without a stack trace; returns that line.</summary>
    private Task<string> RestoreFailsAsync(string store, IReadOnlyDictionary<string, string> environment, params string[] extra) =>
        RestoreFailsAsync(store, environment, guest: true, extra);

    private async Task<string> RestoreFailsAsync(string store, IReadOnlyDictionary<string, string> environment, bool guest, params string[] extra)
    {
        string[] machine = guest ? ["--guest", fixture.Guest.Directory] : [];
        await using var restore = StreamCloneProcess.Start(environment,
            ["restore", "--store", store, .. machine, "--seconds", "1", .. extra]);
        var exit = await restore.WaitAsync(TimeSpan.FromMinutes(3));
        Assert.True(exit == 1, $"exit {exit}\nstdout:\n{restore.Stdout}\nstderr:\n{restore.Stderr}");
        var lines = restore.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var error = Assert.Single(lines, l => l.StartsWith("streamclone: ", StringComparison.Ordinal));
        Assert.DoesNotContain(" at StreamClone.", restore.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", restore.Stderr, StringComparison.Ordinal);
        TestContext.Current.SendDiagnosticMessage(error);
        return error;
    }

    /// <summary>A copy to damage (cp keeps the objects' holes).</summary>
    private static async Task<string> CopyStoreAsync(string from, string to)
    {
        await ExternalTool.RunAsync("cp", "-a", "--sparse=always", from, to);
        return to;
    }

    /// <summary>One live snapshot of the test guest (256 MiB, 32 MiB filled), streamed by `source --qmp` into a `sink` store.</summary>
    public sealed class LiveStore : IAsyncLifetime
    {
        private readonly TempDir _dir = new();

        public string StorePath => _dir.File("store");

        public string SnapshotId { get; private set; } = "";

        /// <summary>The guest's last tick before the snapshot was asked for.</summary>
        public long TicksBeforeSnapshot { get; private set; }

        public async ValueTask InitializeAsync()
        {
            var guest = await GuestBuilder.BuildAsync();
            var sourceQmp = _dir.File("source-qmp.sock");
            await using var vm = await VmLauncher.StartAsync(new VmOptions
            {
                Guest = guest,
                Accel = VmAccel.Tcg,
                FillMiB = 32,
                ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"],
            });
            TicksBeforeSnapshot = GuestLine.Parse(await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= 3, TimeSpan.FromSeconds(60))).Tick;
            var (source, port) = await StreamCloneProcess.StartSourceAsync(_dir.Path, "--qmp", sourceQmp, "--work-dir", _dir.File("live"), "--sessions", "1");
            await using (source)
            {
                await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", StorePath, "--json");
                Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(5)) == 0, $"sink:\n{sink.Stderr}\nsource:\n{source.Stderr}");
                Assert.True(await source.WaitAsync(TimeSpan.FromMinutes(1)) == 0, source.Stderr);
            }
            SnapshotId = Assert.Single(Directory.GetDirectories(Path.Combine(StorePath, "snapshots"))).Split('/')[^1];
        }

        public ValueTask DisposeAsync()
        {
            _dir.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
