using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Perf.Faults;
using StreamClone.Store;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>`sink` and `inspect` as processes on what a store holds: damage on disk, demand figures, a full disk.</summary>
public class StoreProcessTests
{
    [Fact]
    public async Task Inspect_verify_finds_a_chunk_damaged_on_disk_names_it_and_exits_non_zero()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 11);
        await PullAsync(dir, image, dir.File("store"));

        var clean = await InspectAsync(dir.File("store"), "--json");
        Assert.Equal(0, clean.Exit);
        using (var report = JsonDocument.Parse(clean.Stdout))
        {
            Assert.Equal(0, report.RootElement.GetProperty("verify").GetProperty("faults").GetArrayLength());
        }

        // One byte of one stored, non-zero chunk flips on disk (bit rot, a stray write): the journal still calls it present.
        string objectPath;
        int chunkSize;
        using (var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance))
        {
            var snapshot = store.GetSnapshot(store.ListSnapshots().Single().SnapshotId)!;
            objectPath = snapshot.GetObjectPath(0);
            chunkSize = snapshot.Objects[0].ChunkSize;
        }
        var bytes = await File.ReadAllBytesAsync(image);
        var index = Enumerable.Range(100, 1000).First(i => bytes.AsSpan(i * chunkSize, chunkSize).ContainsAnyExcept((byte)0));
        await using (var file = new FileStream(objectPath, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = (long)index * chunkSize + 123;
            var b = file.ReadByte();
            file.Position--;
            file.WriteByte((byte)(b ^ 0x40));
        }

        var damaged = await InspectAsync(dir.File("store"));
        Assert.True(damaged.Exit == 1, damaged.Stdout + damaged.Stderr);
        Assert.Contains($"object 0 chunk {index}:", damaged.Stdout, StringComparison.Ordinal);
        Assert.Contains("1 of", damaged.Stdout, StringComparison.Ordinal);
        var json = await InspectAsync(dir.File("store"), "--json");
        Assert.Equal(1, json.Exit);
        using (var report = JsonDocument.Parse(json.Stdout))
        {
            var fault = Assert.Single(report.RootElement.GetProperty("verify").GetProperty("faults").EnumerateArray());
            Assert.Equal(index, fault.GetProperty("index").GetInt64());
        }
    }

    [Fact]
    public async Task Sink_probe_reads_reports_the_demand_reads_it_made()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 32 << 20, seed: 12);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", $"{image}:memory", "--sessions", "1");
        await using var _ = source;
        // The probe stops when the bulk stream ends: throttled (~11 MB of wire at 4 MB/s, ~3 s), the stream outlasts
        // 40 reads (a few ms each) however fast the machine is. The throttle is per connection and direction, so a
        // demand answer (one chunk) waits only for its own bytes.
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, port)) { BytesPerSecond = 4_000_000 };
        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{proxy.EndPoint.Port}", "--store", dir.File("store"),
            "--probe-reads", "40", "--json");
        Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(2)) == 0, sink.Stderr);
        using var summary = JsonDocument.Parse(sink.LastLine);
        var root = summary.RootElement;
        TestContext.Current.SendDiagnosticMessage(sink.LastLine);
        Assert.Equal(40, root.GetProperty("demand_reads").GetInt32());
        // Hits are draws that found their chunk already stored and were skipped (at most 20 draws per read).
        Assert.InRange(root.GetProperty("demand_hits").GetInt32(), 0, 40 * 20);
        Assert.True(root.GetProperty("demand_p50_ms").GetDouble() > 0);
        Assert.True(root.GetProperty("demand_p99_ms").GetDouble() >= root.GetProperty("demand_p50_ms").GetDouble());
        Assert.True(root.GetProperty("demand_max_ms").GetDouble() >= root.GetProperty("demand_p99_ms").GetDouble());
    }

    [Fact]
    public async Task A_sink_whose_disk_fills_exits_with_one_line_keeps_only_verified_chunks_and_resumes_once_there_is_room()
    {
        using var dir = new TempDir();
        // ~60% of a memory-like image is non-zero: ~19 MiB to store on an 8 MiB file system.
        var image = await TestImages.MemoryAsync(dir, "mem.img", 32 << 20, seed: 13);
        var mount = dir.File("small");
        Directory.CreateDirectory(mount);
        // Room for the whole offer, so the sink's free-space check takes it; a neighbour then eats the disk mid-stream.
        await ExternalTool.RunAsync("mount", "-t", "tmpfs", "-o", "size=40M,mode=0700", "tmpfs", mount);
        try
        {
            var storePath = Path.Combine(mount, "store");
            var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", $"{image}:memory", "--sessions", "2");
            await using var _ = source;
            // Throttled so the bulk stream is still running when the neighbour's file lands (~19 MiB at 4 MB/s is ~5 s).
            await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, port)) { BytesPerSecond = 4_000_000 };

            await using (var full = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{proxy.EndPoint.Port}", "--store", storePath,
                "--free-space-margin", "0", "--json"))
            {
                var snapshots = Path.Combine(storePath, "snapshots");
                await FileWatch.UntilAsync(mount, () => Directory.Exists(snapshots) && Directory.EnumerateDirectories(snapshots).Any(), TimeSpan.FromSeconds(60),
                    () => $"the sink did not take the offer:\n{full.Stderr}", full.Exited, TestContext.Current.CancellationToken);
                await FillAsync(Path.Combine(mount, "neighbour.bin"));
                var exit = await full.WaitAsync(TimeSpan.FromMinutes(2));
                Assert.True(exit == 1, $"exit {exit}\n{full.Stderr}");
                var error = Assert.Single(full.FailureLines);
                TestContext.Current.SendDiagnosticMessage(error);
                Assert.Contains("disk full", error, StringComparison.Ordinal);
                Assert.False(full.Stderr.Contains(" at StreamClone.", StringComparison.Ordinal), full.Stderr);
            }

            // What the store calls present is exactly the source's bytes, checked chunk by chunk against the image.
            var expected = await File.ReadAllBytesAsync(image);
            long kept;
            using (var store = ChunkStore.Open(storePath, NullLogger.Instance))
            {
                var snapshot = store.GetSnapshot(store.ListSnapshots().Single().SnapshotId)!;
                Assert.False(snapshot.IsComplete);
                kept = snapshot.PresentChunks;
                Assert.True((await store.VerifyAsync()).IsClean);
                var chunkSize = snapshot.Objects[0].ChunkSize;
                var actual = new byte[chunkSize];
                for (long i = 0; i < snapshot.TotalChunks; i++)
                {
                    if (snapshot.IsPresent(0, i))
                    {
                        snapshot.Read(0, i * chunkSize, actual);
                        Assert.True(actual.AsSpan().SequenceEqual(expected.AsSpan((int)(i * chunkSize), chunkSize)), $"chunk {i} is present but not the source's");
                    }
                }
            }
            TestContext.Current.SendDiagnosticMessage($"kept {kept} chunks through the full disk");

            File.Delete(Path.Combine(mount, "neighbour.bin"));
            await using var resumed = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", storePath,
                "--free-space-margin", "0", "--json");
            Assert.True(await resumed.WaitAsync(TimeSpan.FromMinutes(2)) == 0, resumed.Stderr);
            using (var summary = JsonDocument.Parse(resumed.LastLine))
            {
                var path = summary.RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;
                Assert.Equal(expected, await File.ReadAllBytesAsync(path));
            }
        }
        finally
        {
            await ExternalTool.RunAsync("umount", "-l", mount);
        }
    }

    /// <summary>Writes zeros until the file system is full, as a neighbour on a busy host would.</summary>
    private static async Task FillAsync(string path)
    {
        var block = new byte[1 << 20];
        await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        try
        {
            while (true)
            {
                await file.WriteAsync(block, TestContext.Current.CancellationToken);
                await file.FlushAsync(TestContext.Current.CancellationToken);
            }
        }
        catch (IOException)
        {
            // ENOSPC: the disk is full, which is the point.
        }
    }

    private static async Task PullAsync(TempDir dir, string image, string store)
    {
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", $"{image}:memory", "--sessions", "1");
        await using var _ = source;
        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json");
        Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(2)) == 0, sink.Stderr);
    }

    private static async Task<(int Exit, string Stdout, string Stderr)> InspectAsync(string store, params string[] extra)
    {
        await using var inspect = StreamCloneProcess.Start(["inspect", "--store", store, "--verify", .. extra]);
        var exit = await inspect.WaitAsync(TimeSpan.FromMinutes(1));
        return (exit, inspect.Stdout, inspect.Stderr);
    }

}
