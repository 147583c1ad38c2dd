using System.Net.Sockets;
using StreamClone.Qemu;

namespace StreamClone.Tests.Integration.Qemu;

[Collection(QemuCollection.Name)]
public class MigrationTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_background_snapshot_streams_QEVM_into_a_passed_socket_while_the_guest_keeps_running()
    {
        await using var vm = await VmLauncher.StartAsync(fixture.Tcg(), ct: Ct);
        var before = GuestLine.Parse(await vm.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(60), ct: Ct));

        var (reader, qemuEnd) = UnixNative.SocketPair();
        using (reader)
        {
            var stream = ReadToEndAsync(reader);
            MigrationInfo info;
            using (qemuEnd)
                info = await vm.Qmp.BackgroundSnapshotToFdAsync(qemuEnd.SafeHandle, TimeSpan.FromSeconds(120), ct: Ct);
            // QEMU closed its copy at the end and ours is closed above: the reader sees EOF.
            var bytes = await stream.WaitAsync(TimeSpan.FromSeconds(30), Ct);

            TestContext.Current.SendDiagnosticMessage(
                $"background snapshot: {bytes.Length} bytes, downtime {info.DowntimeMs} ms, total {info.TotalTimeMs} ms, setup {info.SetupTimeMs} ms");
            Assert.Equal("completed", info.Status);
            Assert.NotNull(info.DowntimeMs);
            Assert.InRange(info.DowntimeMs!.Value, 0, 10_000);
            Assert.Equal("QEVM"u8.ToArray(), bytes[..4]);
            // 32 MiB of non-zero workload pages must be in the stream.
            Assert.True(bytes.Length > 32L << 20, $"stream only {bytes.Length} bytes");
        }

        var status = await vm.Qmp.ExecuteAsync("query-status", null, Ct);
        Assert.Equal("running", status.GetProperty("status").GetString());
        var after = GuestLine.Parse(await vm.WaitForConsoleAsync(
            l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick > before.Tick + 5, TimeSpan.FromSeconds(60), 0, Ct));
        Assert.True(after.Ok, after.ToString());
    }

    private static async Task<byte[]> ReadToEndAsync(Socket socket)
    {
        using var ms = new MemoryStream();
        await SocketCopy.ReadToEndAsync(socket, ms);
        return ms.ToArray();
    }
}
