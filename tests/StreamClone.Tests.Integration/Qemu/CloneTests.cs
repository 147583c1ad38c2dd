using System.Diagnostics;
using System.Net.Sockets;
using StreamClone.Qemu;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>The whole clone path on one machine: stop → copy the disk → background snapshot → restore.</summary>
[Collection(QemuCollection.Name)]
public class CloneTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_clone_restored_from_the_stream_and_frozen_disk_continues_the_sources_tick_sequence_with_equal_state()
    {
        var scratch = Directory.CreateTempSubdirectory("sc-clone-").FullName;
        try
        {
            var streamFile = Path.Combine(scratch, "snapshot.qevm");
            var cloneDisk = Path.Combine(scratch, "clone.raw");
            long lastBeforeStop;
            var sourceLines = new Dictionary<long, GuestLine>();

            // One VM at a time (shared machine): the source runs, is snapshotted, runs on a little and goes.
            await using (var source = await VmLauncher.StartAsync(fixture.Tcg(), ct: Ct))
            {
                // Run a while first so the disk file holds many records and memory many rewritten pages.
                await source.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= 20,
                    TimeSpan.FromSeconds(60), 0, Ct);
                var qmp = source.Qmp;

                // Stop first so RAM and disk are taken at the same instant (vm_stop drains in-flight I/O).
                var mark = qmp.LastEventSequence;
                await qmp.ExecuteAsync("stop", null, Ct);
                await qmp.WaitForEventAsync("STOP", mark, null, TimeSpan.FromSeconds(10), Ct);
                lastBeforeStop = source.GetConsoleLines().Where(GuestLine.IsTick).Select(l => GuestLine.Parse(l).Tick).Max();

                // Stopped, the disk holds still (vm_stop drained in-flight I/O): a plain copy is the snapshot instant.
                File.Copy(source.DiskPath!, cloneDisk);

                var (reader, qemuEnd) = UnixNative.SocketPair();
                using (reader)
                {
                    var copy = CopyToFileAsync(reader, streamFile);
                    using (qemuEnd)
                        await qmp.BackgroundSnapshotToFdAsync(qemuEnd.SafeHandle, TimeSpan.FromSeconds(120), ct: Ct);
                    await copy.WaitAsync(TimeSpan.FromSeconds(30), Ct);
                }
                // The snapshot may already have resumed the guest; cont makes sure it runs.
                await qmp.ExecuteAsync("cont", null, Ct);

                await source.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= lastBeforeStop + 5,
                    TimeSpan.FromSeconds(60), 0, Ct);
                foreach (var line in source.GetConsoleLines().Where(GuestLine.IsTick).Select(GuestLine.Parse))
                    sourceLines[line.Tick] = line;
            }

            var started = Stopwatch.StartNew();
            await using var clone = await VmLauncher.StartAsync(
                fixture.Tcg() with { IncomingDefer = true, DiskPath = cloneDisk }, ct: Ct);
            var (feed, cloneEnd) = UnixNative.SocketPair();
            using (feed)
            {
                var send = SendFileAsync(feed, streamFile);
                string state;
                using (cloneEnd)
                    state = await clone.Qmp.IncomingFromFdAsync(cloneEnd.SafeHandle, TimeSpan.FromSeconds(120), ct: Ct);
                await send.WaitAsync(TimeSpan.FromSeconds(30), Ct);
                // The source was stopped when the snapshot began, so the clone arrives paused.
                Assert.Equal("paused", state);
                await clone.Qmp.ExecuteAsync("cont", null, Ct);
            }
            var first = GuestLine.Parse(await clone.WaitForConsoleAsync(GuestLine.IsTick, TimeSpan.FromSeconds(60), ct: Ct));
            TestContext.Current.SendDiagnosticMessage(
                $"clone: stream {new FileInfo(streamFile).Length} bytes, first tick {first.Tick} (source stopped after {lastBeforeStop}) " +
                $"{started.ElapsedMilliseconds} ms after QEMU start");

            // The clone goes on from the snapshot: the next tick (or the one after, if the stop fell between a
            // tick's state update and its console line), with memory and disk equal to the source's at that tick.
            Assert.InRange(first.Tick, lastBeforeStop + 1, lastBeforeStop + 2);
            Assert.True(first.Ok, first.ToString());
            var twin = sourceLines[first.Tick];
            Assert.Equal(twin.Mem, first.Mem);
            Assert.Equal(twin.Disk, first.Disk);

            // One full sweep re-reads every page of the filled region in the clone: all must still verify.
            var swept = GuestLine.Parse(await clone.WaitForConsoleAsync(
                l => GuestLine.IsTick(l) && GuestLine.Parse(l).Sweep > first.Sweep + 1, TimeSpan.FromSeconds(120), 0, Ct));
            Assert.True(swept.Ok, swept.ToString());
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static async Task CopyToFileAsync(Socket socket, string path)
    {
        await using var file = File.Create(path);
        await SocketCopy.ReadToEndAsync(socket, file);
    }

    private static async Task SendFileAsync(Socket socket, string path)
    {
        await using var file = File.OpenRead(path);
        await SocketCopy.WriteAllAsync(socket, file);
    }
}
