using System.Diagnostics;
using StreamClone.Qemu;

namespace StreamClone.Tests.Integration.Qemu;

[Collection(QemuCollection.Name)]
public class VmLauncherTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_TCG_guest_boots_ticks_every_100ms_and_verifies_its_memory_and_disk()
    {
        string workDir;
        int pid;
        await using (var vm = await VmLauncher.StartAsync(fixture.Tcg(), ct: Ct))
        {
            workDir = vm.WorkDir;
            pid = vm.ProcessId;
            Assert.Equal(VmAccel.Tcg, vm.Accel);
            Assert.NotNull(vm.BootTime);
            TestContext.Current.SendDiagnosticMessage($"TCG boot to init line: {vm.BootTime!.Value.TotalMilliseconds:0} ms");

            var first = GuestLine.Parse(await vm.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(60), ct: Ct));
            var mark = vm.ConsoleLineCount;
            var later = GuestLine.Parse(await vm.WaitForConsoleAsync(
                l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= first.Tick + 10, TimeSpan.FromSeconds(30), mark, Ct));

            Assert.True(first.Ok && later.Ok, $"workload self-check failed: {later}");
            Assert.NotEqual("00000000", later.Disk); // /data mounted over virtio-blk: the modules loaded.
            Assert.NotEqual(first.Mem, later.Mem);
            var status = await vm.Qmp.ExecuteAsync("query-status", null, Ct);
            Assert.Equal("running", status.GetProperty("status").GetString());
            Assert.Contains("SC tick=", await File.ReadAllTextAsync(vm.ConsoleLogPath, Ct), StringComparison.Ordinal);
        }

        Assert.False(Directory.Exists(workDir), "the launcher's work directory must be removed on dispose");
        Assert.False(IsRunning(pid), $"QEMU pid {pid} must be gone after dispose");
    }

    [Fact]
    public async Task KVM_either_boots_the_guest_or_fails_clearly_within_its_deadline()
    {
        var deadline = TimeSpan.FromSeconds(8);
        var watch = Stopwatch.StartNew();
        try
        {
            await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with { Accel = VmAccel.Kvm, KvmBootDeadline = deadline }, ct: Ct);
            Assert.Equal(VmAccel.Kvm, vm.Accel);
            Assert.True(GuestLine.Parse(await vm.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(30), ct: Ct)).Ok);
        }
        catch (KvmUnusableException e)
        {
            TestContext.Current.SendDiagnosticMessage($"KVM refused after {watch.ElapsedMilliseconds} ms: {e.Message}");
            Assert.StartsWith("KVM unusable", e.Message, StringComparison.Ordinal);
            // Start-up (QMP connect) + the console deadline + killing QEMU: well under 3x the deadline.
            Assert.True(watch.Elapsed < deadline * 3, $"KVM failure took {watch.Elapsed}");
        }
    }

    [Fact]
    public async Task Auto_runs_the_guest_under_whatever_works_here()
    {
        await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with { Accel = VmAccel.Auto }, ct: Ct);

        Assert.NotEqual(VmAccel.Auto, vm.Accel);
        Assert.True(GuestLine.Parse(await vm.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(60), ct: Ct)).Ok);
    }

    [Fact]
    public async Task A_QEMU_that_cannot_start_fails_with_its_stderr()
    {
        var e = await Assert.ThrowsAsync<VmStartException>(() =>
            VmLauncher.StartAsync(fixture.Tcg() with { Memory = "notasize" }, ct: Ct));

        Assert.Contains("exited", e.Message, StringComparison.Ordinal);
        Assert.Contains("notasize", e.Message, StringComparison.Ordinal);
    }

    internal static bool IsRunning(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
