using System.Text.Json.Nodes;
using StreamClone.Qemu;

namespace StreamClone.Tests.Integration.Qemu;

[Collection(QemuCollection.Name)]
public class QmpClientQemuTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Real_QEMU_greets_answers_reports_errors_and_takes_a_passed_fd()
    {
        await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with { WaitForBoot = false }, ct: Ct);
        var qmp = vm.Qmp;

        Assert.Equal(7, qmp.Version.Major);
        Assert.Contains("oob", qmp.Capabilities);

        var unknown = await Assert.ThrowsAsync<QmpException>(() => qmp.ExecuteAsync("no-such-command", null, Ct));
        Assert.Equal("CommandNotFound", unknown.Class);

        var strict = await Assert.ThrowsAsync<QmpException>(() =>
            qmp.ExecuteAsync("query-status", new JsonObject { ["bogus"] = 1 }, Ct));
        Assert.Equal("GenericError", strict.Class);

        var noFd = await Assert.ThrowsAsync<QmpException>(() =>
            qmp.ExecuteAsync("getfd", new JsonObject { ["fdname"] = "x" }, Ct));
        Assert.Contains("SCM_RIGHTS", noFd.Desc, StringComparison.Ordinal);

        var (mine, theirs) = UnixNative.SocketPair();
        using (mine)
        using (theirs)
        {
            await qmp.GetFdAsync("passed", theirs.SafeHandle, Ct);
            // QEMU holds it now: closefd succeeds only for a name it knows.
            await qmp.ExecuteAsync("closefd", new JsonObject { ["fdname"] = "passed" }, Ct);
            var gone = await Assert.ThrowsAsync<QmpException>(() =>
                qmp.ExecuteAsync("closefd", new JsonObject { ["fdname"] = "passed" }, Ct));
            Assert.Equal("GenericError", gone.Class);
        }

        // stop/cont: RESUME may come before cont's reply; a wait from the mark still sees it.
        var mark = qmp.LastEventSequence;
        await qmp.ExecuteAsync("stop", null, Ct);
        await qmp.WaitForEventAsync("STOP", mark, null, TimeSpan.FromSeconds(10), Ct);
        mark = qmp.LastEventSequence;
        await qmp.ExecuteAsync("cont", null, Ct);
        await qmp.WaitForEventAsync("RESUME", mark, null, TimeSpan.FromSeconds(10), Ct);
    }

    [Fact]
    public async Task Quit_ends_the_connection_and_the_process()
    {
        await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with { WaitForBoot = false }, ct: Ct);
        var mark = vm.Qmp.LastEventSequence;

        await vm.Qmp.QuitAsync(TimeSpan.FromSeconds(10));

        await vm.Qmp.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        Assert.Equal(0, await vm.Exited.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        var shutdown = await vm.Qmp.WaitForEventAsync("SHUTDOWN", mark, null, TimeSpan.FromSeconds(1), Ct);
        Assert.Equal("host-qmp-quit", shutdown.GetString("reason"));
        await Assert.ThrowsAsync<QmpProtocolException>(() => vm.Qmp.ExecuteAsync("query-status", null, Ct));
    }
}
