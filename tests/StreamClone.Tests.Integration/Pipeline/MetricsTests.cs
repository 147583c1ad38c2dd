using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using StreamClone.Tests.Integration.Infrastructure;
using StreamClone.Tests.Unit.Diagnostics;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// The StreamClone meter over real transfers: counts taken by a MeterListener in process (both
/// sides in this process, so what one side sent the other received), and the exporter of a real
/// `source --metrics` process scraped over HTTP in Prometheus text format.
/// </summary>
[Collection(nameof(MetricsCollection))]
public class MetricsTests
{
    private const int ChunkSize = 4096;
    private const string SinkName = "metrics-test-sink";
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task An_in_process_transfer_counts_chunks_by_kind_bytes_both_ways_demand_reads_flushes_and_closes()
    {
        using var dir = new TempDir();
        const int size = 8 << 20;
        const int chunks = size / ChunkSize;
        const int reads = 5;
        var image = await TestImages.MemoryAsync(dir, "mem.img", size, seed: 71);
        using var recorder = new MetricRecorder();
        using var stop = new CancellationTokenSource(Guard);
        long sinkPayload;
        await using (var input = ImageFileInput.Open([(image, ObjectKind.Memory)], ChunkSize, "metrics-in-process"))
        await using (var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance))
        {
            var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
            var ended = new TaskCompletionSource<DownstreamSessionStats>(TaskCreationOptions.RunContinuationsAsynchronously);
            server.SessionEnded += stats => ended.TrySetResult(stats);
            var serving = server.RunAsync(stop.Token);
            using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
            await using (var sink = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions { PeerName = SinkName }, TransportOptions.Default, NullLogger.Instance, stop.Token))
            {
                // Before the bulk loop runs nothing is present, so each read goes to the source.
                var buffer = new byte[ChunkSize];
                for (var i = 0; i < reads; i++)
                {
                    Assert.Equal(ChunkSize, await sink.ReadAsync(0, (long)i * (1 << 20), buffer, stop.Token));
                }
                await sink.RunAsync();
                sinkPayload = sink.Stats.PayloadBytes;
                // The sink stays open until the source has read its last frame (SnapshotStored): disposing
                // at once can shut the socket before the send loop wrote that frame (FrameConnection.DisposeAsync
                // aborts without draining), and the frame would count as sent, never as received.
                var sourceSession = await ended.Task.WaitAsync(stop.Token);
                Assert.True(sourceSession.Completed, sourceSession.Error);
            }
            await stop.CancelAsync();
            await serving;
        }

        const string Chunks = "streamclone.chunks";
        double SourceBulk(string kind) => recorder.Sum(Chunks, ("kind", kind), ("role", "source"), ("lane", "bulk"));
        double SinkBulk(string kind) => recorder.Sum(Chunks, ("kind", kind), ("role", "sink"), ("lane", "bulk"));

        // The source's bulk pass classifies every chunk once; a memory-like image has zero pages and duplicates.
        Assert.Equal(chunks, SourceBulk("data") + SourceBulk("zero") + SourceBulk("known") + SourceBulk("dedup"));
        Assert.True(SourceBulk("zero") > 0, "zero chunks");
        Assert.True(SourceBulk("dedup") > 0, "dedup chunks");
        Assert.True(SourceBulk("data") > 0, "data chunks");
        Assert.Equal(0, SourceBulk("known"));
        // The sink sees the same stream; dedup travels as Known on the wire.
        Assert.Equal(SourceBulk("data"), SinkBulk("data"));
        Assert.Equal(SourceBulk("zero"), SinkBulk("zero"));
        Assert.Equal(SourceBulk("known") + SourceBulk("dedup"), SinkBulk("known"));
        Assert.Equal(0, SinkBulk("dedup"));

        // Demand: one request and one chunk per read, each side counting its own, and a latency per read.
        Assert.Equal(reads, recorder.Sum("streamclone.demand.requests", ("role", "source")));
        Assert.Equal(reads, recorder.Sum("streamclone.demand.requests", ("role", "sink")));
        Assert.Equal(reads, recorder.Sum(Chunks, ("role", "source"), ("lane", "demand")));
        Assert.Equal(reads, recorder.Sum(Chunks, ("role", "sink"), ("lane", "demand")));
        Assert.Equal(reads, recorder.Count("streamclone.demand.latency"));
        Assert.All(recorder.Measurements.Where(m => m.Instrument == "streamclone.demand.latency"), m => Assert.InRange(m.Value, 1e-6, Guard.TotalSeconds));

        // Bytes: both ends are in this process, every frame one side sent the other read.
        Assert.Equal(recorder.Sum("streamclone.bytes.sent"), recorder.Sum("streamclone.bytes.received"));
        Assert.True(recorder.Sum("streamclone.bytes.sent", ("peer", SinkName), ("lane", "bulk")) > sinkPayload);
        Assert.True(recorder.Sum("streamclone.bytes.sent", ("peer", SinkName), ("lane", "demand")) > 0);
        Assert.True(recorder.Sum("streamclone.bytes.received", ("peer", PeerLabels.Process.Of(Environment.MachineName)), ("lane", "bulk")) > sinkPayload);
        Assert.Subset(new HashSet<string> { SinkName, PeerLabels.Process.Of(Environment.MachineName), PeerLabels.Unknown }, recorder.TagValues("streamclone.bytes.sent", "peer").ToHashSet());

        // The store made the non-zero chunks durable; every flush has a duration.
        Assert.True(recorder.Sum("streamclone.store.flushes") >= 1);
        Assert.Equal(recorder.Sum("streamclone.store.flushes"), recorder.Count("streamclone.store.flush.duration"));
        Assert.InRange(recorder.Sum("streamclone.store.flushed.bytes"), 1, size);

        // Two lanes, two ends: four connections, each counted once, under its first reason: the bulk lanes
        // end completed (the snapshot stored and acknowledged), the demand lanes are closed here, or seen
        // closed by the other end first (which side wins that race varies).
        Assert.Equal(4, recorder.Sum("streamclone.connections.closed"));
        Assert.Contains(CloseReasons.Completed, recorder.TagValues("streamclone.connections.closed", "reason"));
        Assert.Subset(new HashSet<string> { CloseReasons.Completed, CloseReasons.Local, CloseReasons.PeerClosed }, recorder.TagValues("streamclone.connections.closed", "reason").ToHashSet());
    }

    [Fact]
    public async Task Source_metrics_are_served_in_prometheus_text_format_after_a_transfer()
    {
        using var dir = new TempDir();
        const int size = 8 << 20;
        var image = await TestImages.MemoryAsync(dir, "mem.img", size, seed: 72);
        var metricsPort = LoopbackPorts.Free();
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--metrics", $"127.0.0.1:{metricsPort}");
        await using (source)
        {
            await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json");
            Assert.True(await sink.WaitAsync(Guard) == 0, sink.Stderr);
            using var summary = JsonDocument.Parse(sink.LastLine);

            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{metricsPort}/metrics"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
            var text = await response.Content.ReadAsStringAsync();

            Assert.Contains("# TYPE streamclone_bytes_sent_total counter", text, StringComparison.Ordinal);
            Assert.Contains("# TYPE streamclone_chunks_total counter", text, StringComparison.Ordinal);
            var samples = Parse(text);
            double Chunks(string kind) => samples.GetValueOrDefault($"streamclone_chunks_total{{kind=\"{kind}\",lane=\"bulk\",role=\"source\"}}");
            Assert.True(Chunks("zero") > 0, text);
            Assert.True(Chunks("data") > 0, text);
            Assert.Equal(size / ChunkSize, Chunks("data") + Chunks("zero") + Chunks("known") + Chunks("dedup"));
            Assert.Equal(summary.RootElement.GetProperty("data_chunks").GetInt64(), (long)Chunks("data"));
            var bulkSent = samples.Where(s => s.Key.StartsWith("streamclone_bytes_sent_total{", StringComparison.Ordinal) && s.Key.Contains("lane=\"bulk\"", StringComparison.Ordinal)).Sum(s => s.Value);
            Assert.True(bulkSent >= summary.RootElement.GetProperty("payload_bytes").GetInt64(), text);
            // Process metrics come along.
            Assert.Contains("process_cpu_seconds_total", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_metrics_port_in_use_is_one_clear_line_and_exit_1()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 1 << 20, seed: 73);
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        await using var source = StreamCloneProcess.Start("source", "--image", image, "--listen", "127.0.0.1:0", "--metrics", $"127.0.0.1:{port}");

        Assert.Equal(1, await source.WaitAsync(Guard));
        var line = Assert.Single(source.FailureLines);
        Assert.Contains($"--metrics 127.0.0.1:{port}", line, StringComparison.Ordinal);
        Assert.Single(source.StderrLines);
    }


    /// <summary>Prometheus text format samples: "name{labels}" → value (comments skipped).</summary>
    private static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith('#'))
            {
                continue;
            }
            var space = line.LastIndexOf(' ');
            samples[line[..space]] = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
        }
        return samples;
    }
}
