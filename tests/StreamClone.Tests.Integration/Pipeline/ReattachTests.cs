using System.Net;
using System.Text.Json;
using StreamClone.Perf.Faults;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// A sink whose upstream dies reattaches to the next candidate and resumes from its store (issue 8 "Failure"): real
/// source and sink processes over loopback. Two `source --image` processes on one file with one `--snapshot-id`
/// offer the same snapshot, as a relay and its upstream would.
/// </summary>
public class ReattachTests
{
    private static readonly TimeSpan ExitGuard = TimeSpan.FromMinutes(3);

    private static string CopyPath(RunningProcess sink) =>
        JsonDocument.Parse(sink.LastLine).RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;

    [Fact]
    public async Task A_sink_given_a_dead_upstream_first_pulls_from_the_next()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 81);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using var _ = source;
        var dead = LoopbackPorts.Free();

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{dead},127.0.0.1:{port}", "--store", dir.File("store"),
            "--json", "--log-level", "Information");
        var exit = await sink.WaitAsync(ExitGuard);

        Assert.True(exit == 0, sink.Stderr);
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(CopyPath(sink)));
        Assert.Contains(sink.StderrLines, l => l.Contains($"Reattach attempt 1 to 127.0.0.1:{dead} failed", StringComparison.Ordinal));
        Assert.Equal(0, await source.WaitAsync(ExitGuard));
    }

    /// <summary>
    /// The first source stops sending mid-stream (the proxy holds its bytes from 4 MiB on) and is then killed: no
    /// FIN, no RST reaches the sink, as when a host dies. The sink's idle timeout ends that session; it reattaches to
    /// the second source offering the same snapshot and ends byte-identical, having kept what it verified. Demand reads
    /// run beside it all along.
    /// </summary>
    [Fact]
    public async Task A_sink_whose_source_dies_mid_stream_reattaches_to_the_next_and_ends_identical()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 48 << 20, seed: 82);
        string[] common = ["--image", image, "--snapshot-id", "reattach-1"];
        var (first, firstPort) = await StreamCloneProcess.StartSourceAsync(dir.Path, common);
        await using var _ = first;
        var (second, secondPort) = await StreamCloneProcess.StartSourceAsync(dir.Path, [.. common, "--sessions", "1"]);
        await using var __ = second;
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, firstPort));
        proxy.Inject(connection: 1, ProxyDirection.Downstream, ProxyFault.StallAfter(4 << 20));

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{proxy.EndPoint.Port},127.0.0.1:{secondPort}",
            "--store", dir.File("store"), "--idle-timeout", "2", "--probe-reads", "40", "--probe-spacing-ms", "50", "--json", "--log-level", "Information");
        using var stalled = new CancellationTokenSource(ExitGuard);
        await proxy.WhenBytesAsync(1, ProxyDirection.Downstream, 4 << 20, stalled.Token);
        first.Kill();
        var exit = await sink.WaitAsync(ExitGuard);

        Assert.True(exit == 0, sink.Stderr);
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(CopyPath(sink)));
        Assert.Contains(sink.StderrLines, l => l.Contains($"Reattached to 127.0.0.1:{secondPort}: snapshot reattach-1 resumes", StringComparison.Ordinal));
        // Demand reads ran through the outage (those caught by it waited for the next upstream): none failed the sink.
        using var summary = JsonDocument.Parse(sink.LastLine);
        Assert.True(summary.RootElement.GetProperty("demand_reads").GetInt32() > 0, sink.LastLine);
        Assert.Equal(0, await second.WaitAsync(ExitGuard));
    }

    [Fact]
    public async Task A_sink_whose_upstreams_are_all_gone_ends_at_the_reattach_deadline_with_one_line()
    {
        using var dir = new TempDir();
        var (a, b) = (LoopbackPorts.Free(), LoopbackPorts.Free());

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{a},127.0.0.1:{b}", "--store", dir.File("store"),
            "--reattach-timeout", "2", "--json");
        var exit = await sink.WaitAsync(ExitGuard);

        Assert.True(exit == 1, sink.Stderr);
        var line = Assert.Single(sink.FailureLines);
        Assert.Contains("no upstream answered within 2 s (--reattach-timeout)", line, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{a}", line, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{b}", line, StringComparison.Ordinal);
    }

    public static TheoryData<string, long[]> LyingSequences => new()
    {
        { "skips", [1, 3] },
        { "repeats", [1, 1] },
        { "reorders", [2, 1] },
        { "starts at zero", [0] },
    };

    /// <summary>On the TCP bulk lane alone batches come 1, 2, 3, …: a source that skips, repeats or reorders is lying.</summary>
    [Theory]
    [MemberData(nameof(LyingSequences))]
    public async Task A_bulk_lane_out_of_sequence_is_a_protocol_error(string lie, long[] sequences)
    {
        using var dir = new TempDir();
        const int Page = 4096;
        var page = new byte[Page];
        var hashes = new byte[ChunkHash.Size];
        ChunkHash.Compute(page).Write(hashes);
        var source = new HostileSource(IPAddress.Loopback, new SnapshotOfferMessage
        {
            SnapshotId = "sequence",
            CreatedUtc = new DateTime(2026, 11, 30, 8, 0, 0, DateTimeKind.Utc),
            Origin = "hostile-test",
            Objects = [new ObjectInfo { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = 4L * Page, ChunkSize = Page }],
        })
        {
            BulkFrames = (writer, output) =>
            {
                foreach (var sequence in sequences)
                {
                    writer.Write(output, FrameType.ChunkBatch, new ChunkBatchMessage
                    {
                        Sequence = sequence,
                        ObjectId = 0,
                        FirstIndex = sequence is > 0 and <= 4 ? sequence - 1 : 0,
                        Kinds = [(byte)ChunkEntryKind.Data],
                        Hashes = hashes,
                        Codec = PayloadCodec.None,
                        RawLength = Page,
                    }, page);
                }
                return Task.CompletedTask;
            },
        };
        await using (source)
        {
            await using var sink = StreamCloneProcess.Start("sink", "--connect", source.Connect, "--store", dir.File("store"), "--json", "--insecure");
            var exit = await sink.WaitAsync(ExitGuard);

            Assert.True(exit == 1, $"{lie}: exit {exit}\n{sink.Stderr}");
            var line = Assert.Single(sink.FailureLines);
            Assert.Contains(nameof(ProtocolError.OutOfSequence), line, StringComparison.Ordinal);
            await source.BulkEnded;
            Assert.Equal(ProtocolError.OutOfSequence, source.ErrorReceived?.Code);
        }
    }
}
