using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Clone;
using StreamClone.Qemu;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using StreamClone.Source;
using StreamClone.Source.Live;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>
/// The bad input for the live source: a QMP socket that is not QEMU, a VM that dies while its
/// snapshot streams, a migration stream cut short or corrupt, a work dir that is full. Each ends with one
/// clear error, no sink is told the snapshot is complete, and a VM that ran keeps running.
/// </summary>
[Collection(QemuCollection.Name)]
public class LiveSourceFailureTests(QemuFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public enum FakeMonitor
    {
        Missing,
        Garbage,
        Silent,
        Hangup,
    }

    [Theory]
    [InlineData(FakeMonitor.Missing)]
    [InlineData(FakeMonitor.Garbage)]
    [InlineData(FakeMonitor.Silent)]
    [InlineData(FakeMonitor.Hangup)]
    public async Task A_qmp_socket_that_is_not_qemu_ends_the_source_within_seconds_with_one_line_naming_it(FakeMonitor kind)
    {
        using var dir = new TempDir();
        var path = dir.File("not-qemu.sock");
        using var listener = kind == FakeMonitor.Missing ? null : new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var peer = Task.CompletedTask;
        if (listener is not null)
        {
            listener.Bind(new UnixDomainSocketEndPoint(path));
            listener.Listen(4);
            peer = ServeFakeMonitorAsync(listener, kind, stop.Token);
        }

        var clock = Stopwatch.StartNew();
        await using var source = StreamCloneProcess.Start("source", "--qmp", path, "--work-dir", dir.File("live"), "--listen", "127.0.0.1:0", "--port-file", dir.File("port"));
        var exit = await source.WaitAsync(TimeSpan.FromSeconds(30));
        await stop.CancelAsync();
        await peer;

        Assert.Equal(1, exit);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
        var lines = source.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var error = Assert.Single(lines, l => l.StartsWith("streamclone: ", StringComparison.Ordinal));
        Assert.Contains(path, error, StringComparison.Ordinal);
        Assert.DoesNotContain(" at StreamClone.", source.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.File("port")), "a source without a VM must never offer anything");
        TestContext.Current.SendDiagnosticMessage($"{kind}: {error} ({clock.Elapsed.TotalSeconds:F1} s)");
    }

    private static async Task ServeFakeMonitorAsync(Socket listener, FakeMonitor kind, CancellationToken ct)
    {
        var held = new List<Socket>();
        try
        {
            while (true)
            {
                var client = await listener.AcceptAsync(ct);
                held.Add(client);
                switch (kind)
                {
                    case FakeMonitor.Garbage:
                        await client.SendAsync("SSH-2.0-OpenSSH_9.6 this is not a monitor\r\n\x01\x02\xff"u8.ToArray(), ct);
                        break;
                    case FakeMonitor.Hangup:
                        client.Dispose();
                        break;
                    default:
                        // Silent: accept and never say a word (a monitor held by another client looks like this).
                        break;
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            foreach (var socket in held)
            {
                socket.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_VM_that_dies_mid_snapshot_fails_source_and_sink_leaves_the_store_snapshot_partial_and_restore_refuses_it()
    {
        using var dir = new TempDir();
        var sourceQmp = dir.File("source-qmp.sock");
        var vm = await VmLauncher.StartAsync(fixture.Tcg(fillMiB: 400) with
        {
            Memory = "512M",
            ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"],
        }, ct: Ct);
        await using (vm)
        {
            await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= 2, TimeSpan.FromSeconds(120), 0, Ct);

            // The source writes its port file once the RAM block list arrived; ~450 MB of pages take seconds more.
            var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--qmp", sourceQmp, "--work-dir", dir.File("live"), "--sessions", "1");
            await using var _ = source;
            await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json");
            // The sink holds the offer (its store has the snapshot): freeze the source there, so QEMU is held
            // mid-stream and the kill lands inside the snapshot however fast the machine is.
            var snapshots = Path.Combine(dir.File("store"), "snapshots");
            await FileWatch.UntilAsync(dir.Path, () => Directory.Exists(snapshots) && Directory.EnumerateDirectories(snapshots).Any(), TimeSpan.FromSeconds(30),
                () => $"the sink did not get the offer (or the source ended before the VM was killed):\nsink:\n{sink.Stderr}\nsource:\n{source.Stderr}",
                source.Exited, Ct);
            await ExternalTool.RunAsync("kill", "-STOP", source.Id.ToString(CultureInfo.InvariantCulture));
            try
            {
                using var qemu = Process.GetProcessById(vm.ProcessId);
                qemu.Kill();
                await qemu.WaitForExitAsync(Ct);
            }
            finally
            {
                await ExternalTool.RunAsync("kill", "-CONT", source.Id.ToString(CultureInfo.InvariantCulture));
            }

            var sourceExit = await source.WaitAsync(TimeSpan.FromSeconds(60));
            var sinkExit = await sink.WaitAsync(TimeSpan.FromSeconds(60));
            TestContext.Current.SendDiagnosticMessage($"source: {LastLine(source.Stderr)}\nsink: {LastLine(sink.Stderr)}");
            Assert.True(sourceExit == 1, $"source exit {sourceExit}:\n{source.Stderr}\n{source.Stdout}");
            var error = LastLine(source.Stderr);
            Assert.StartsWith("streamclone: live snapshot of the VM behind " + sourceQmp + " failed:", error, StringComparison.Ordinal);
            Assert.Contains("cut short", error, StringComparison.Ordinal);
            Assert.Contains("did QEMU die?", error, StringComparison.Ordinal);
            Assert.True(sinkExit != 0, $"sink:\n{sink.Stderr}\n{sink.Stdout}");
            var sinkError = Assert.Single(sink.FailureLines);
            // The sink is told why (the source's session reports the failed snapshot), not just hung up on.
            Assert.Contains("peer reported IncompleteSnapshot", sinkError, StringComparison.Ordinal);
            Assert.Contains("cut short", sinkError, StringComparison.Ordinal);
            Assert.DoesNotContain(" at StreamClone.", sink.Stderr, StringComparison.Ordinal);
        }

        string id;
        using (var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance))
        {
            var snapshot = Assert.Single(store.ListSnapshots());
            Assert.False(snapshot.IsComplete);
            id = snapshot.SnapshotId;
        }
        await using var restore = StreamCloneProcess.Start("restore", "--store", dir.File("store"), "--snapshot", id, "--guest", fixture.Guest.Directory, "--memory", "512M", "--work-dir", dir.File("clone"));
        Assert.Equal(1, await restore.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal($"streamclone: snapshot {id} is not complete", LastLine(restore.Stderr).Split(" (")[0]);
    }

    public enum StreamFault
    {
        CutShort,
        Corrupt,
    }

    [Theory]
    [InlineData(StreamFault.CutShort)]
    [InlineData(StreamFault.Corrupt)]
    public async Task A_migration_stream_cut_short_or_corrupt_fails_the_source_and_its_connected_sink_and_is_never_complete(StreamFault fault)
    {
        using var dir = new TempDir();
        var stream = await MigrationStreamAsync(16 << 20);
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
        await using var input = new LiveSnapshotInput(dir.File("ram"), [], 4096, $"stream-{fault}");
        var receive = input.ReceiveAsync(pipe.Reader, Ct);
        // Half the RAM arrives; the sink is served it while the rest is still "in flight".
        await pipe.Writer.WriteAsync(stream.AsMemory(0, stream.Length / 2), Ct);
        await input.OfferReady.WaitAsync(TimeSpan.FromSeconds(10), Ct);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        stop.CancelAfter(TimeSpan.FromMinutes(2));
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        var serving = server.RunAsync(stop.Token);
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token);
        var bulk = session.RunAsync();
        // Wait until the sink stored part of the snapshot: its bulk pass is now waiting for pages that will never come.
        var firstPresent = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnPresent(int objectId, long index)
        {
            if (objectId == 0 && index == 0)
            {
                firstPresent.TrySetResult();
            }
        }
        session.Snapshot.ChunkPresent += OnPresent;
        try
        {
            if (!session.Snapshot.IsPresent(0, 0))
            {
                await Task.WhenAny(firstPresent.Task, bulk).WaitAsync(TimeSpan.FromSeconds(60), stop.Token);
            }
            Assert.True(session.Snapshot.IsPresent(0, 0), $"the sink ended before the stream broke ({bulk.Status})");
        }
        finally
        {
            session.Snapshot.ChunkPresent -= OnPresent;
        }

        if (fault == StreamFault.CutShort)
        {
            await pipe.Writer.CompleteAsync();
        }
        else
        {
            // Garbage where a ram record belongs; the writer stays open: the failure must not wait for the end of the stream.
            await pipe.Writer.WriteAsync(Enumerable.Repeat((byte)0xFF, 64 << 10).ToArray(), Ct);
        }

        var error = await Assert.ThrowsAsync<LiveSnapshotException>(() => receive.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        Assert.IsType<QemuStreamException>(error.InnerException);
        Assert.Contains(fault == StreamFault.CutShort ? "cut short" : "Malformed", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<LiveSnapshotException>(() => input.Completed);
        // A reader of a page that never arrived fails with the stream's error instead of waiting.
        var late = await Assert.ThrowsAsync<IOException>(async () => await input.ReadAsync(0, (16 << 20) - 4096, new byte[4096], Ct));
        Assert.Contains(error.Message, late.Message, StringComparison.Ordinal);

        // The sink's transfer ends with an error (the source drops the session) instead of waiting for pages.
        await ((Task)bulk).WaitAsync(TimeSpan.FromSeconds(30), Ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
        Assert.True(bulk.IsCompleted, "the sink still waits for pages that will never come");
        Assert.True(bulk.IsFaulted, $"the sink's transfer ended {bulk.Status}");
        TestContext.Current.SendDiagnosticMessage($"{fault}: sink: {bulk.Exception!.InnerException!.Message}");
        // ...and is told why: the source reports the stream's error on the bulk lane.
        var sinkError = Assert.IsType<StreamClone.Shared.Protocol.ProtocolViolationException>(bulk.Exception!.InnerException);
        Assert.Equal(StreamClone.Shared.Protocol.ProtocolError.PeerError, sinkError.Code);
        Assert.Contains("IncompleteSnapshot", sinkError.Message, StringComparison.Ordinal);
        Assert.Contains(fault == StreamFault.CutShort ? "cut short" : "Malformed", sinkError.Message, StringComparison.Ordinal);
        Assert.False(session.Snapshot.IsComplete);
        var snapshot = Assert.Single(store.ListSnapshots());
        Assert.False(snapshot.IsComplete);
        Assert.True(session.Snapshot.PresentChunks > 0);
        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => CloneRestorer.RestoreAsync(store.GetSnapshot(snapshot.SnapshotId)!, fixture.Tcg(), dir.File("clone"), NullLogger.Instance, Ct));
        Assert.Contains("is not complete", refused.Message, StringComparison.Ordinal);

        await stop.CancelAsync();
        await serving;
    }

    /// <summary>A migration stream as QEMU sends one (QemuStreamWriter writes the same format): one RAM block of pattern pages.</summary>
    private static async Task<byte[]> MigrationStreamAsync(long ramBytes)
    {
        var preamble = new byte[8];
        "QEVM"u8.CopyTo(preamble);
        BinaryPrimitives.WriteUInt32BigEndian(preamble.AsSpan(4), 3);
        // The device region is never reached by a broken stream; EOF alone stands in for it.
        var blob = new DeviceStateBlob(preamble, 2, "ram", 0, 4, 4096, [new RamBlockInfo("pc.ram", ramBytes)], new byte[] { 0 });
        using var output = new MemoryStream();
        await QemuStreamWriter.WriteAsync(blob, new PatternRam(), output, null, Ct);
        return output.ToArray();
    }

    private sealed class PatternRam : IRamSource
    {
        public ValueTask<bool> TryReadPageAsync(int blockIndex, long offset, Memory<byte> destination, CancellationToken ct)
        {
            destination.Span[..4096].Fill((byte)(1 + (offset / 4096 % 251)));
            return ValueTask.FromResult(true);
        }
    }

    [Fact]
    public async Task A_full_work_dir_fails_the_snapshot_at_once_offers_nothing_and_leaves_the_VM_running_on_its_own_disk()
    {
        using var dir = new TempDir();
        var work = dir.File("tiny");
        Directory.CreateDirectory(work);
        await ExternalTool.RunAsync("mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", work);
        try
        {
            var sourceQmp = dir.File("source-qmp.sock");
            await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with
            {
                ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"],
            }, ct: Ct);
            await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= 3, TimeSpan.FromSeconds(60), 0, Ct);
            var diskBefore = await ActiveDiskFileAsync(vm);

            await using var source = StreamCloneProcess.Start("source", "--qmp", sourceQmp, "--work-dir", Path.Combine(work, "live"), "--listen", "127.0.0.1:0", "--port-file", dir.File("port"));
            Assert.Equal(1, await source.WaitAsync(TimeSpan.FromSeconds(60)));
            var error = LastLine(source.Stderr);
            TestContext.Current.SendDiagnosticMessage(error);
            Assert.StartsWith("streamclone: live snapshot of the VM behind " + sourceQmp + " not started:", error, StringComparison.Ordinal);
            Assert.Contains(Path.Combine(work, "live"), error, StringComparison.Ordinal);
            Assert.Contains("No space left on device", error, StringComparison.Ordinal);
            Assert.False(File.Exists(dir.File("port")), "a snapshot that failed must never be offered");

            // The VM runs on, on its own disk, and keeps counting.
            await AssertRunsOnItsOwnDiskAsync(vm, diskBefore);
        }
        finally
        {
            await ExternalTool.RunAsync("umount", "-l", work);
        }
    }

    /// <summary>
    /// A tmpfs with room for the RAM but few inodes: with 4 (root, work dir, migration socket, disk scratch image)
    /// the RAM dir cannot be created inside the pause, after the disk view was started; with 5 (+ RAM dir) the first
    /// RAM file cannot be created once the stream runs, which QEMU 7.2 survives only if the source reads its stream
    /// to the end.
    /// </summary>
    [Theory]
    [InlineData(4, "not started, the VM goes on as before:", "/ram")]
    [InlineData(5, "failed:", "ram-0.img")]
    public async Task A_snapshot_that_fails_after_the_VM_was_stopped_leaves_the_VM_running_and_ends_the_source_with_one_line(int inodes, string outcome, string file)
    {
        using var dir = new TempDir();
        var work = dir.File("no-inodes");
        Directory.CreateDirectory(work);
        await ExternalTool.RunAsync("mount", "-t", "tmpfs", "-o", $"size=512M,nr_inodes={inodes}", "tmpfs", work);
        try
        {
            var sourceQmp = dir.File("source-qmp.sock");
            await using var vm = await VmLauncher.StartAsync(fixture.Tcg() with
            {
                ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"],
            }, ct: Ct);
            await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= 3, TimeSpan.FromSeconds(60), 0, Ct);
            var diskBefore = await ActiveDiskFileAsync(vm);
            var mark = vm.Qmp.LastEventSequence;

            await using var source = StreamCloneProcess.Start("source", "--qmp", sourceQmp, "--work-dir", Path.Combine(work, "live"), "--listen", "127.0.0.1:0", "--port-file", dir.File("port"));
            Assert.Equal(1, await source.WaitAsync(TimeSpan.FromSeconds(60)));
            var error = LastLine(source.Stderr);
            TestContext.Current.SendDiagnosticMessage(error);
            Assert.StartsWith("streamclone: live snapshot of the VM behind " + sourceQmp + " " + outcome, error, StringComparison.Ordinal);
            Assert.Contains(file, error, StringComparison.Ordinal);
            Assert.Contains("No space left on device", error, StringComparison.Ordinal);
            Assert.DoesNotContain(" at StreamClone.", source.Stderr, StringComparison.Ordinal);
            Assert.False(File.Exists(dir.File("port")));

            // The source did stop the VM (so the snapshot really failed inside the pause), and resumed it.
            await vm.Qmp.WaitForEventAsync("STOP", mark, _ => true, TimeSpan.FromSeconds(1), Ct);
            await AssertRunsOnItsOwnDiskAsync(vm, diskBefore);
        }
        finally
        {
            await ExternalTool.RunAsync("umount", "-l", work);
        }
    }

    [Fact]
    public async Task RAM_that_does_not_fit_the_work_dir_is_an_IOException_when_the_block_list_arrives_not_a_crash_later()
    {
        using var dir = new TempDir();
        var work = dir.File("tiny");
        Directory.CreateDirectory(work);
        await ExternalTool.RunAsync("mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", work);
        try
        {
            // 64 MiB of pages into 8 MiB: written through the mapping of a sparse file this would be a SIGBUS.
            var stream = await MigrationStreamAsync(64 << 20);
            var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
            await using var input = new LiveSnapshotInput(Path.Combine(work, "ram"), [], 4096, "too-big");
            var receive = input.ReceiveAsync(pipe.Reader, Ct);
            await pipe.Writer.WriteAsync(stream, Ct);
            await pipe.Writer.CompleteAsync();

            var error = await Assert.ThrowsAsync<LiveSnapshotException>(() => receive.WaitAsync(TimeSpan.FromSeconds(30), Ct));
            var full = Assert.IsType<IOException>(error.InnerException);
            Assert.Contains("cannot reserve 64 MiB", full.Message, StringComparison.Ordinal);
            Assert.Contains("No space left on device", full.Message, StringComparison.Ordinal);
            await Assert.ThrowsAsync<LiveSnapshotException>(() => input.OfferReady);
            Assert.Equal(0, input.PagesReceived);
        }
        finally
        {
            await ExternalTool.RunAsync("umount", "-l", work);
        }
    }

    /// <summary>The VM is running, on the disk it had before the failed snapshot, and keeps counting with intact memory.</summary>
    private static async Task AssertRunsOnItsOwnDiskAsync(VmLauncher vm, string diskBefore)
    {
        Assert.Equal("running", (await vm.Qmp.ExecuteAsync("query-status", null, Ct)).GetProperty("status").GetString());
        Assert.Equal(diskBefore, await ActiveDiskFileAsync(vm));
        var last = vm.GetConsoleLines().Where(GuestLine.IsTick).Select(GuestLine.Parse).Last();
        var next = GuestLine.Parse(await vm.WaitForConsoleAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= last.Tick + 3, TimeSpan.FromSeconds(30), 0, Ct));
        Assert.True(next.Ok, next.ToString());
    }

    private static async Task<string> ActiveDiskFileAsync(VmLauncher vm)
    {
        var devices = await vm.Qmp.ExecuteAsync("query-block", null, Ct);
        return devices.EnumerateArray()
            .Where(d => d.TryGetProperty("inserted", out var i) && !i.GetProperty("ro").GetBoolean())
            .Select(d => d.GetProperty("inserted").GetProperty("file").GetString()!)
            .Single();
    }


    private static string LastLine(string text) =>
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";
}
