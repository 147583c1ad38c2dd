using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Topology;

/// <summary>`streamclone status --once --json` against real nodes' metrics endpoints, a node serving garbage, and one that is gone.</summary>
public sealed class StatusCommandTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task Status_of_a_running_topology_shows_the_sinks_progress_and_both_sides_rates()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        // 32 MiB memory-like (~11 MB on the wire) over 4 Mbit/s: ~20 s of transfer, time enough for the CLI's start on a loaded machine.
        var image = await TestImages.MemoryAsync(dir, "in.img", 32 << 20, seed: 83);
        var name = TopologyScript.UniqueName("stat");
        var file = dir.File("status.topo");
        await File.WriteAllTextAsync(file, $"""
            name {name}
            link 4mbit
            host src source --image {"{input}"} --listen {"{addr}"}:7000
            host s1  sink   --connect {"{addr:src}"}:7000 --store {"{dir:s1}"}
            """, ct);
        var runDir = dir.File("run");
        var up = await TopologyScript.RunAsync(["up", file, "--dir", runDir, "--set", $"input={image}", "--bin", TopologyScript.Bin], ct);
        var runId = File.Exists(Path.Combine(runDir, "run-id")) ? (await File.ReadAllTextAsync(Path.Combine(runDir, "run-id"), ct)).Trim() : null;
        try
        {
            Assert.True(up.ExitCode == 0, up.Stderr);
            Assert.NotNull(runId);
            // Every node answered its metrics before `up` returned; the sink's progress gauges appear once its session has the offer.
            using var guard = new CancellationTokenSource(Guard);
            Dictionary<string, JsonElement> nodes;
            do
            {
                var status = await TopologyScript.RunAsync(["status", runId, "--once", "--json", "--interval", "1"], guard.Token);
                Assert.True(status.ExitCode == 0, status.Stderr);
                nodes = JsonDocument.Parse(status.Stdout).RootElement.GetProperty("nodes").EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
                Assert.True(nodes["s1"].GetProperty("state").GetString() == "up",
                    $"{status.Stdout}\nsink's log: {string.Join('\n', File.ReadLines(Path.Combine(runDir, "s1", "stderr")).TakeLast(5))}");
            }
            while (nodes["s1"].GetProperty("chunks_total").ValueKind == JsonValueKind.Null);

            var sink = nodes["s1"];
            var source = nodes["src"];
            Assert.Equal("up", sink.GetProperty("state").GetString());
            Assert.Equal("up", source.GetProperty("state").GetString());
            Assert.True(sink.GetProperty("chunks_total").GetInt64() > 0);
            Assert.InRange(sink.GetProperty("progress").GetDouble(), 0, 1);
            Assert.True(sink.GetProperty("receive_bytes_per_second").GetDouble() > 0, sink.ToString());
            // The source's send rate is there; it may read 0 while the kernel drains what the source already wrote (its counter counts frames handed to the socket's pipe).
            Assert.True(source.GetProperty("send_bytes_per_second").GetDouble() >= 0, source.ToString());
            Assert.Equal(JsonValueKind.Null, source.GetProperty("progress").ValueKind);
            // 4 Mbit/s is 0.5 MB/s: the rate is a counter delta over the interval (whole frames, so it jitters), bounded by the link.
            Assert.True(sink.GetProperty("receive_bytes_per_second").GetDouble() < 2e6, sink.ToString());
        }
        finally
        {
            var down = await TopologyScript.RunAsync(["down", name], CancellationToken.None);
            Assert.True(down.ExitCode == 0, down.Stderr);
        }
        Assert.Empty(await TopologyScript.NamespacesOfAsync(runId!, ct));
        Assert.Empty(TopologyScript.ProcessesNaming(runDir));
    }

    [Fact]
    public async Task A_node_serving_garbage_is_an_error_and_a_gone_one_is_down_while_the_source_is_read()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", 1 << 20, seed: 84);
        var metricsPort = LoopbackPorts.Free();
        var (source, _) = await StreamClone.Tests.Utilities.StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--metrics", $"127.0.0.1:{metricsPort}");
        await using var sourceProcess = source;
        using var garbage = new TcpListener(IPAddress.Loopback, 0);
        garbage.Start();
        using var stop = new CancellationTokenSource();
        var serving = ServeGarbageAsync(garbage, stop.Token);
        var gonePort = LoopbackPorts.Free();

        await using var status = StreamClone.Tests.Utilities.StreamCloneProcess.Start("status",
            "--node", $"src=127.0.0.1:{metricsPort}",
            "--node", $"junk=http://127.0.0.1:{((IPEndPoint)garbage.LocalEndpoint).Port}/metrics",
            "--node", $"gone=127.0.0.1:{gonePort}",
            "--once", "--json", "--interval", "0.5");
        Assert.Equal(0, await status.WaitAsync(Guard, ct));
        await stop.CancelAsync();
        garbage.Stop();
        await serving;

        var nodes = JsonDocument.Parse(string.Join('\n', status.StdoutLines)).RootElement.GetProperty("nodes").EnumerateArray()
            .ToDictionary(n => n.GetProperty("name").GetString()!);
        Assert.Equal("up", nodes["src"].GetProperty("state").GetString());
        Assert.True(nodes["src"].GetProperty("send_bytes_per_second").GetDouble() >= 0);
        Assert.Equal("error", nodes["junk"].GetProperty("state").GetString());
        Assert.StartsWith("not Prometheus text at line 1", nodes["junk"].GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal("down", nodes["gone"].GetProperty("state").GetString());
        Assert.DoesNotContain(status.StderrLines, l => l.Contains("Exception", StringComparison.Ordinal));
    }

    /// <summary>An HTTP server whose 200 answer is not Prometheus text: braces, control bytes, a line without a value.</summary>
    private static async Task ServeGarbageAsync(TcpListener listener, CancellationToken ct)
    {
        var body = Encoding.UTF8.GetBytes("{{{ streamclone_bytes_sent_total{peer=\"x\" 12\u0001\u001b[31m\nstreamclone_multicast_nacks_total NaN-ish\n");
        try
        {
            while (true)
            {
                using var client = await listener.AcceptTcpClientAsync(ct);
                await using var stream = client.GetStream();
                var request = new byte[4096];
                _ = await stream.ReadAsync(request, ct);
                var head = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
                await stream.WriteAsync(head, ct);
                await stream.WriteAsync(body, ct);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        catch (SocketException)
        {
        }
    }
}
