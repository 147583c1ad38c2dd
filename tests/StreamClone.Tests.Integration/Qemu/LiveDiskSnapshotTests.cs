using System.Security.Cryptography;
using StreamClone.Shared.Qemu;

namespace StreamClone.Tests.Integration.Qemu;

[Collection(QemuCollection.Name)]
public class LiveDiskSnapshotTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_base_stops_changing_while_the_guest_writes_on_and_commit_folds_the_overlay_back()
    {
        await using var vm = await VmLauncher.StartAsync(fixture.Tcg(), ct: Ct);
        var qmp = vm.Qmp;
        await vm.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(60), ct: Ct);
        Assert.Equal(VmLauncher.DiskNode, await LiveDiskSnapshot.GetActiveNodeAsync(qmp, "vd0", Ct));

        var frozen = await LiveDiskSnapshot.FreezeAsync(qmp, VmLauncher.DiskNode, vm.WorkDir, Ct);
        var atFreeze = vm.ConsoleLineCount;

        Assert.Equal(vm.DiskPath, frozen.BaseFile);
        Assert.Equal("raw", frozen.BaseFormat);
        Assert.True(File.Exists(frozen.OverlayFile));
        Assert.Equal(frozen.OverlayNodeName, await LiveDiskSnapshot.GetActiveNodeAsync(qmp, "vd0", Ct));
        var nodes = await LiveDiskSnapshot.QueryNodesAsync(qmp, Ct);
        Assert.True(nodes.Single(n => n.NodeName == VmLauncher.DiskNode).ReadOnly);

        // The guest fdatasyncs a record every tick: two hashes 10+ ticks apart must agree for a frozen base.
        var tickAtFreeze = await NextTickAsync(vm, atFreeze);
        var baseHash1 = await HashAsync(frozen.BaseFile);
        var overlaySize1 = new FileInfo(frozen.OverlayFile).Length;
        var later = await TickAtLeastAsync(vm, tickAtFreeze.Tick + 10);
        var baseHash2 = await HashAsync(frozen.BaseFile);

        Assert.True(later.Ok, later.ToString());
        Assert.Equal(baseHash1, baseHash2);
        Assert.NotEqual(tickAtFreeze.Disk, later.Disk); // ...while the guest's disk content did move on.
        Assert.True(new FileInfo(frozen.OverlayFile).Length >= overlaySize1);

        await LiveDiskSnapshot.CommitAsync(qmp, frozen, TimeSpan.FromSeconds(60), Ct);

        Assert.Equal(VmLauncher.DiskNode, await LiveDiskSnapshot.GetActiveNodeAsync(qmp, "vd0", Ct));
        Assert.DoesNotContain(await LiveDiskSnapshot.QueryNodesAsync(qmp, Ct), n => n.NodeName == frozen.OverlayNodeName);
        Assert.False(File.Exists(frozen.OverlayFile));
        var afterCommit = await TickAtLeastAsync(vm, later.Tick + 5);
        Assert.True(afterCommit.Ok, afterCommit.ToString());
        // Writes go to the base again (and the overlay's data was folded into it).
        Assert.NotEqual(baseHash2, await HashAsync(frozen.BaseFile));

        // A second freeze on the same VM works (new overlay name, same base node).
        var again = await LiveDiskSnapshot.FreezeAsync(qmp, VmLauncher.DiskNode, vm.WorkDir, Ct);
        Assert.NotEqual(frozen.OverlayNodeName, again.OverlayNodeName);
        await LiveDiskSnapshot.CommitAsync(qmp, again, TimeSpan.FromSeconds(60), Ct);
    }

    private static async Task<GuestLine> NextTickAsync(VmLauncher vm, long afterLine) =>
        GuestLine.Parse(await vm.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(30), afterLine, Ct));

    private static async Task<GuestLine> TickAtLeastAsync(VmLauncher vm, long tick) =>
        GuestLine.Parse(await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= tick,
            TimeSpan.FromSeconds(60), 0, Ct));

    private static async Task<string> HashAsync(string path)
    {
        // The guest's writes reach the file through QEMU's page cache writes; read what is on disk now.
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Convert.ToHexString(await SHA256.HashDataAsync(f, Ct));
    }
}
