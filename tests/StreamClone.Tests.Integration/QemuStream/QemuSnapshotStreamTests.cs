using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using StreamClone.Qemu.Migration;
using StreamClone.Tests.Integration.Qemu;

namespace StreamClone.Tests.Integration.QemuStream;

/// <summary>
/// Against a real QEMU 7.2: a firmware-only q35 VM (note qemu-migration-stream.md [V] setup, under TCG as in
/// qemu-on-these-machines.md) takes a background snapshot into a unix socket this test listens on; the reader parses
/// it as it arrives; the writer rebuilds a stream from the parsed pages + device state and a second QEMU with the
/// same command line loads it and runs. One QEMU at a time (the QEMU collection runs its classes one after another);
/// both are killed on every path.
/// </summary>
[Collection(QemuCollection.Name)]
public class QemuSnapshotStreamTests
{
    private const long RamBytes = 128L << 20;

    /// <summary>Bytes of the live stream also fed to a second reader that then sees the transport end: mid-RAM.</summary>
    private const int CutAt = 300_000;

    private static readonly string[] Machine =
        ["-machine", "q35,accel=tcg", "-m", "128M", "-nodefaults", "-display", "none", "-monitor", "stdio"];

    [Fact]
    public async Task Background_snapshot_is_parsed_live_and_the_rebuilt_stream_restores_to_running()
    {
        // A missing QEMU is a broken test machine, not a reason to pass: ./test installs it.
        Assert.True(HmpQemu.IsInstalled(), $"{HmpQemu.Binary} is not installed (apt-get install qemu-system-x86)");
        var ct = TestContext.Current.CancellationToken;
        var output = TestContext.Current.TestOutputHelper;
        var dir = Directory.CreateTempSubdirectory("streamclone-qemu-");
        try
        {
            // 1. Snapshot: QEMU connects to our socket; the reader consumes the stream while it arrives.
            var snapshotSocket = Path.Combine(dir.FullName, "snap.sock");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(snapshotSocket));
            listener.Listen(1);

            var store = new PageStore();
            QemuStreamReader reader;
            QemuStreamException cutShort;
            long streamBytes;
            await using (var source = await HmpQemu.StartAsync(Machine, ct))
            {
                Assert.Equal("", await source.CommandAsync("migrate_set_capability background-snapshot on", ct));
                var accept = listener.AcceptAsync(ct).AsTask();
                Assert.Equal("", await source.CommandAsync($"migrate -d unix:{snapshotSocket}", ct));
                using var connection = await accept.WaitAsync(TimeSpan.FromSeconds(30), ct);

                var full = new Pipe(new PipeOptions(minimumSegmentSize: 64 * 1024, useSynchronizationContext: false));
                var cut = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
                var pump = Task.Run(() => PumpAsync(connection, full.Writer, cut.Writer, ct), ct);
                reader = new QemuStreamReader(full.Reader, store);
                var read = reader.ReadToEndAsync(ct);
                var readCut = Assert.ThrowsAsync<QemuStreamException>(
                    () => new QemuStreamReader(cut.Reader, new PageStore()).ReadToEndAsync(ct));

                streamBytes = await pump;
                await read;
                cutShort = await readCut;

                var migrate = await source.PollAsync("info migrate",
                    s => s.Contains("Migration status: completed", StringComparison.Ordinal)
                         || s.Contains("Migration status: failed", StringComparison.Ordinal),
                    TimeSpan.FromSeconds(60), ct);
                Assert.Contains("Migration status: completed", migrate, StringComparison.Ordinal);
                // 7.2 quirk (note §8.3): the source keeps running after a background snapshot.
                Assert.Contains("running", await source.CommandAsync("info status", ct), StringComparison.Ordinal);
            }

            var stats = reader.Statistics;
            output?.WriteLine($"stream {streamBytes} bytes; pages {stats.PageRecords}, zero {stats.FilledRecords}, named {stats.NamedRecords}, " +
                              $"out of order {stats.OutOfOrderRecords}, chunks {stats.RamChunks}, straddled {stats.StraddledPages}, device region {stats.DeviceRegionBytes}");
            output?.WriteLine("blocks: " + string.Join(", ", store.Blocks!.Select(b => $"{b.Name}={b.UsedLength}")));

            // 2. What the stream held.
            Assert.Equal(streamBytes, stats.BytesRead);
            var blocks = Assert.IsAssignableFrom<IReadOnlyList<RamBlockInfo>>(store.Blocks);
            Assert.Equal(new RamBlockInfo("pc.ram", RamBytes), blocks[0]);
            Assert.Contains(blocks, b => b.Name == "pc.bios");
            Assert.Contains(blocks, b => b.Name == "pc.rom");
            Assert.Contains(blocks, b => b.Name.StartsWith("/rom@etc/", StringComparison.Ordinal));
            // A background snapshot sends every page of every block exactly once (note §8.1 step 5).
            var totalPages = blocks.Sum(b => (b.UsedLength + 4095) / 4096);
            Assert.Equal(totalPages, stats.PageRecords + stats.FilledRecords);
            Assert.Equal(totalPages, store.Seen.Count);
            Assert.Equal(0, store.Duplicates);
            Assert.Null(store.OrderError);
            Assert.InRange(stats.PageRecords, 10, totalPages / 2); // firmware touched some pages; most RAM is zero

            var blob = Assert.IsType<DeviceStateBlob>(store.DeviceState);
            Assert.Equal("QEVM"u8.ToArray(), blob.Preamble[..4].ToArray());
            Assert.Contains("pc-q35-7.2", Encoding.ASCII.GetString(blob.Preamble.Span), StringComparison.Ordinal);
            Assert.Equal((byte)0x04, blob.DeviceRegion.Span[0]); // first FULL section
            using (var vmdesc = JsonDocument.Parse(blob.VmDescription))
            {
                Assert.Equal(4096, vmdesc.RootElement.GetProperty("page_size").GetInt32());
                var devices = vmdesc.RootElement.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("name").GetString()).ToList();
                Assert.Contains("globalstate", devices);
                Assert.DoesNotContain("ram", devices);
            }

            Assert.Contains("cut short", cutShort.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("device region", cutShort.Message, StringComparison.Ordinal);
            Assert.Equal(CutAt, cutShort.Offset);
            output?.WriteLine("cut short: " + cutShort.Message);

            // 3. Restore: the blob survives its own serialization, then a second QEMU loads the rebuilt stream.
            var restored = DeviceStateBlob.Deserialize(blob.Serialize());
            var incomingSocket = Path.Combine(dir.FullName, "in.sock");
            await using (var destination = await HmpQemu.StartAsync([.. Machine, "-incoming", $"unix:{incomingSocket}"], ct))
            {
                Assert.Contains("inmigrate", await destination.CommandAsync("info status", ct), StringComparison.Ordinal);
                using var client = await ConnectWhenListeningAsync(incomingSocket, destination, ct);
                QemuStreamWriterStatistics written;
                await using (var stream = new NetworkStream(client, ownsSocket: false))
                {
                    written = await QemuStreamWriter.WriteAsync(restored, store, stream, ct: ct);
                }

                client.Shutdown(SocketShutdown.Send);
                output?.WriteLine($"rebuilt stream {written.BytesWritten} bytes: pages {written.PageRecords}, zero records {written.ZeroRecords}, " +
                                  $"skipped zero pages {written.SkippedZeroPages}, chunks {written.Chunks}");

                var status = await destination.PollAsync("info status",
                    s => !s.Contains("inmigrate", StringComparison.Ordinal), TimeSpan.FromSeconds(60), ct);
                Assert.True(status.Contains("VM status: running", StringComparison.Ordinal), $"{status}\nstderr:\n{destination.Stderr}");
                Assert.Equal(store.Pages.Count, written.PageRecords);
            }

            // 4. The check above means something: the same stream with pc.ram announced at half its size is refused.
            var wrong = new DeviceStateBlob(restored.Preamble, restored.RamSectionId, restored.RamIdStr, restored.RamInstanceId,
                restored.RamVersion, restored.TargetPageSize,
                [new RamBlockInfo("pc.ram", RamBytes / 2), .. restored.Blocks.Skip(1)], restored.DeviceRegion);
            var refused = await RestoreExpectingFailureAsync(wrong, store, Path.Combine(dir.FullName, "in2.sock"), ct);
            output?.WriteLine("refused: " + refused.Trim());
            Assert.Contains("load of migration failed", refused, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    /// <summary>
    /// Connects to a destination's <c>-incoming unix:</c> socket. QEMU prints its first monitor prompt before it
    /// creates that listener, and neither HMP nor the socket announces it, so connection attempts are retried (50 ms
    /// apart, 30 s at most) while the process lives.
    /// </summary>
    private static async Task<Socket> ConnectWhenListeningAsync(string path, HmpQemu destination, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
                return socket;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                socket.Dispose();
                Assert.Contains("inmigrate", await destination.CommandAsync("info status", ct), StringComparison.Ordinal);
                await Task.Delay(50, ct);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    /// <summary>Feeds <paramref name="blob"/> to a fresh destination that must exit; returns its stderr.</summary>
    private static async Task<string> RestoreExpectingFailureAsync(DeviceStateBlob blob, IRamSource ram, string socketPath, CancellationToken ct)
    {
        await using var destination = await HmpQemu.StartAsync([.. Machine, "-incoming", $"unix:{socketPath}"], ct);
        using var client = await ConnectWhenListeningAsync(socketPath, destination, ct);
        try
        {
            await using var stream = new NetworkStream(client, ownsSocket: false);
            await QemuStreamWriter.WriteAsync(blob, ram, stream, ct: ct);
        }
        catch (Exception e) when (e is IOException or SocketException)
        {
            // QEMU may close the socket as soon as it rejects the block list.
        }

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => destination.PollAsync("info status",
            s => false, TimeSpan.FromSeconds(60), ct));
        Assert.Contains("QEMU exited", ex.Message, StringComparison.Ordinal);
        return destination.Stderr;
    }

    /// <summary>Socket → pipe (the reader's input), and its first <see cref="CutAt"/> bytes into a second pipe.</summary>
    private static async Task<long> PumpAsync(Socket socket, PipeWriter full, PipeWriter cut, CancellationToken ct)
    {
        long total = 0;
        try
        {
            while (true)
            {
                var memory = full.GetMemory(64 * 1024);
                var n = await socket.ReceiveAsync(memory, SocketFlags.None, ct);
                if (n == 0)
                {
                    return total;
                }

                if (total < CutAt)
                {
                    var take = (int)Math.Min(n, CutAt - total);
                    await cut.WriteAsync(memory[..take], ct);
                    if (total + take == CutAt)
                    {
                        await cut.CompleteAsync();
                    }
                }

                full.Advance(n);
                total += n;
                var flush = await full.FlushAsync(ct);
                if (flush.IsCompleted)
                {
                    return total;
                }
            }
        }
        finally
        {
            await full.CompleteAsync();
            await cut.CompleteAsync();
        }
    }
}
