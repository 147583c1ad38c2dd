using System.Net;
using System.Text.Json;
using StreamClone.Perf.Faults;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>Source and sink as real, separate processes over loopback, with a fault proxy between them where a test needs one.</summary>
public class PipelineProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(3);

    private static async Task<(int Exit, JsonDocument? Summary, RunningProcess Sink)> RunSinkAsync(int port, string store, params string[] extra)
    {
        var sink = StreamCloneProcess.Start(["sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json", "--log-level", "Information", .. extra]);
        var exit = await sink.WaitAsync(Timeout);
        return (exit, exit == 0 ? JsonDocument.Parse(sink.LastLine) : null, sink);
    }

    private static string CopyPath(JsonDocument summary) => summary.RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;

    [Fact]
    public async Task The_sink_copy_is_identical_to_the_source_image()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 24 << 20, seed: 1);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using var _ = source;

        var (exit, summary, sink) = await RunSinkAsync(port, dir.File("store"));
        await using var __ = sink;

        Assert.True(exit == 0, sink.Stderr);
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(CopyPath(summary!)));
        Assert.True(summary!.RootElement.GetProperty("wire_bytes").GetInt64() < new FileInfo(image).Length, "zero pages and compression must shrink the wire");
        Assert.Equal(0, await source.WaitAsync(Timeout));
    }

    /// <summary>
    /// Plain TCP: our frame CRC catches the flipped byte. Mutual TLS (the default): the record's AES-GCM tag
    /// catches it before any frame is parsed. Either way the sink ends with one line, stores nothing
    /// unverified, and the resumed copy is identical.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_corrupt_frame_is_rejected_and_the_resumed_copy_is_still_identical(bool tls)
    {
        string[] security = tls ? [] : ["--insecure"];
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 16 << 20, seed: 2);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, ["--image", image, "--sessions", "1", "--log-level", "Debug", .. security]);
        await using var _ = source;
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, port));
        proxy.Inject(connection: 1, ProxyDirection.Downstream, ProxyFault.Flip(3 << 20));
        var store = dir.File("store");

        var (exit, _, corrupted) = await RunSinkAsync(proxy.EndPoint.Port, store, security);
        await using var ___ = corrupted;
        Assert.NotEqual(0, exit);
        if (tls)
        {
            Assert.True(corrupted.FailureLines.Length == 1, $"stdout:\n{corrupted.Stdout}\nstderr:\n{corrupted.Stderr}\nsource:\n{source.Stderr}");
        }
        else
        {
            Assert.True(corrupted.Stderr.Contains("ChecksumMismatch", StringComparison.Ordinal), $"stdout:\n{corrupted.Stdout}\nstderr:\n{corrupted.Stderr}\nsource:\n{source.Stderr}");
        }

        // Straight to the source this time. Anything the first run stored must have been verified:
        // a stored bad chunk would never be sent again and would break the copy or its root hash.
        var (exit2, summary, sink) = await RunSinkAsync(port, store, security);
        await using var ____ = sink;
        Assert.True(exit2 == 0, sink.Stderr);
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(CopyPath(summary!)));

        // The source kept serving after the bad session (only a stored snapshot counts towards --sessions)
        // and reports each one; a failed session makes its exit code 1.
        Assert.Equal(1, await source.WaitAsync(Timeout));
        using var report = JsonDocument.Parse(source.LastLine);
        var sessions = report.RootElement.GetProperty("sessions");
        Assert.False(sessions[0].GetProperty("completed").GetBoolean());
        Assert.True(sessions[1].GetProperty("completed").GetBoolean());
    }

    [Fact]
    public async Task A_sink_killed_mid_transfer_resumes_to_an_identical_copy_and_receives_only_the_rest()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 32 << 20, seed: 3);
        // Three sessions, two of which store the snapshot: the killed one does not count towards --sessions.
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "2");
        await using var _ = source;
        var store = dir.File("store");

        // Reference: a full transfer into another store, for its wire size.
        var (exitFull, full, fullSink) = await RunSinkAsync(port, dir.File("reference-store"));
        await using var __ = fullSink;
        Assert.True(exitFull == 0, fullSink.Stderr);
        var fullWire = full!.RootElement.GetProperty("wire_bytes").GetInt64();

        // Throttled so the kill lands mid-transfer: ~4 MB/s against a ~10 MB wire.
        await using (var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, port)) { BytesPerSecond = 4 << 20 })
        {
            var victim = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{proxy.EndPoint.Port}", "--store", store, "--json");
            await using var ___ = victim;
            // Kill once the store's journal shows ~3000 of the 8192 chunks durable (48-byte records
            // after a 16-byte header): the proxy's byte count would mislead, since kernel buffers
            // hold megabytes the sink has not read yet.
            await FileWatch.UntilAsync(dir.Path, () => JournalBytes(store) >= 16 + (48 * 3000), TimeSpan.FromMinutes(2),
                () => $"the sink made no durable progress:\n{victim.Stderr}", victim.Exited, TestContext.Current.CancellationToken);
            victim.Kill();
        }

        var (exit, resumed, sink) = await RunSinkAsync(port, store);
        await using var ____ = sink;
        Assert.True(exit == 0, sink.Stderr);
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(CopyPath(resumed!)));
        var resumedWire = resumed!.RootElement.GetProperty("wire_bytes").GetInt64();
        Assert.True(resumedWire < fullWire * 0.8, $"resumed transfer received {resumedWire} bytes, a full one {fullWire}: verified chunks must not be sent again\n{sink.Stderr}");

        // The killed session counts as failed (exit code 1); the source served on, and the last one completed.
        Assert.Equal(1, await source.WaitAsync(Timeout));
        using var report = JsonDocument.Parse(source.LastLine);
        var sessions = report.RootElement.GetProperty("sessions");
        Assert.Equal(3, sessions.GetArrayLength());
        Assert.True(sessions[2].GetProperty("completed").GetBoolean());
    }

    private static long JournalBytes(string store)
    {
        var snapshots = Path.Combine(store, "snapshots");
        return Directory.Exists(snapshots)
            ? Directory.EnumerateFiles(snapshots, "journal.log", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length)
            : 0;
    }
}
