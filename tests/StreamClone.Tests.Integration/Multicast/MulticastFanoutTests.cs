using System.Text.Json;
using StreamClone.Tests.Integration.Infrastructure;
using StreamClone.Tests.Integration.Topology;

namespace StreamClone.Tests.Integration.Multicast;

/// <summary>
/// source --multicast in one namespace, sinks with --multicast-interface (and a plain TCP sink) in others, through
/// perf/topology.sh: every copy is identical to the image, and the multicast sinks cost the source about one stream.
/// </summary>
public sealed class MulticastFanoutTests
{
    private const long ImageSize = 16 << 20;

    [Fact]
    public async Task Two_multicast_sinks_and_a_tcp_sink_end_identical_and_multicast_costs_about_one_stream()
    {
        using var run = await RunAsync("mcfan", seed: 91, loss: null, TestContext.Current.CancellationToken);

        // The TCP sink's session received one whole stream over TCP (the compressed batches plus control); the two
        // multicast sinks together cost the source less than 1.5 of that: one multicast stream, repairs, control lanes.
        var tcpStream = run.Summaries["t1"].GetProperty("wire_bytes").GetInt64();
        var multicastPart = run.Nodes["src"].GetProperty("bytes_out").GetInt64() - tcpStream;
        Assert.True(multicastPart < 1.5 * tcpStream, $"source sent {multicastPart} bytes for two multicast sinks, one TCP stream is {tcpStream}");
        foreach (var sink in new[] { "m1", "m2" })
        {
            // Multicast carried the stream: the sink's TCP session brought a small part of it (control, at most a few batches).
            var overTcp = run.Summaries[sink].GetProperty("wire_bytes").GetInt64();
            Assert.True(overTcp < tcpStream / 4, $"{sink} received {overTcp} bytes over TCP of a {tcpStream}-byte stream");
        }
    }

    [Fact]
    public async Task Five_percent_udp_loss_at_one_multicast_receiver_is_repaired_and_every_copy_is_identical()
    {
        using var run = await RunAsync("mcloss", seed: 92, loss: "m1", TestContext.Current.CancellationToken);

        // The sinks exit too soon for a scrape; the source counts the NACKs it received.
        Assert.True(run.Nodes["src"].GetProperty("nacks").GetInt64() > 0, "the source received no NACKs");
        Assert.True(run.Nodes["src"].GetProperty("repairs").GetInt64() > 0, "the source sent no repairs");
    }

    [Fact]
    public async Task A_multicast_sink_joining_late_takes_the_earlier_batches_over_tcp_and_ends_identical()
    {
        // The sender starts with the first receiver and at 2 MB/s the stream lasts seconds; a barrier in the topology starts
        // m2 only once m1 answers (sinks otherwise start together, and m2 had joined at batch 1 in 2 runs of 4), so m2
        // joins with part of the stream already multicast.
        using var run = await RunAsync("mclate", seed: 93, loss: null, TestContext.Current.CancellationToken, receivers: 1, maxRate: 2_000_000, late: true);

        var m2 = File.ReadAllText(Path.Combine(run.Dir, "m2", "stderr"));
        var joined = System.Text.RegularExpressions.Regex.Match(m2, "joined on eth0, batches from (\\d+) on");
        Assert.True(joined.Success, m2);
        var first = long.Parse(joined.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(first > 1, "m2 joined before the first batch: not late");
        // The batches before its first came over its TCP lane.
        Assert.True(run.Summaries["m2"].GetProperty("wire_bytes").GetInt64() > run.Summaries["m1"].GetProperty("wire_bytes").GetInt64());
    }

    /// <summary>A finished run; disposing it deletes its directory (images, stores, logs).</summary>
    private sealed record Run(Dictionary<string, JsonElement> Nodes, Dictionary<string, JsonElement> Summaries, string Dir, TempDir Temp) : IDisposable
    {
        public void Dispose() => Temp.Dispose();
    }

    private static async Task<Run> RunAsync(string prefix, int seed, string? loss, CancellationToken ct, int receivers = 2, long maxRate = 11_000_000, bool late = false)
    {
        var dir = new TempDir();
        try
        {
            var image = await TestImages.MemoryAsync(dir, "in.img", ImageSize, seed);
            var name = TopologyScript.UniqueName(prefix);
            var file = dir.File("mc.topo");
            await File.WriteAllTextAsync(file, $"""
                # source multicasting to two sinks on its segment, and one TCP sink; every link 100 Mbit/s
                name {name}
                link 100mbit
                timeout 150
                host src source --image {"{input}"} --listen {"{addr}"}:7000 --sessions 3 --json --multicast 239.77.8.1:7100 --interface eth0 --max-rate {maxRate} --multicast-receivers {receivers} --log-level Information
                host m1  sink   --connect {"{addr:src}"}:7000 --store {"{dir:m1}"} --json --multicast-interface eth0 --log-level Information
                {(late ? "barrier" : "")}
                host m2  sink   --connect {"{addr:src}"}:7000 --store {"{dir:m2}"} --json --multicast-interface eth0 --log-level Information
                host t1  sink   --connect {"{addr:src}"}:7000 --store {"{dir:t1}"} --json
                {(loss is null ? "" : $"loss {loss} 5%")}
                """, ct);
            var runDir = dir.File("run");
            var json = dir.File("report.json");

            var result = await TopologyScript.RunAsync(["run", file, "--json", json, "--dir", runDir, "--set", $"input={image}", "--bin", TopologyScript.Bin], ct);

            Assert.True(result.ExitCode == 0, result.Stderr + Logs(runDir));
            var report = TopologyScript.ReadJson(json);
            var nodes = report.GetProperty("nodes").EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
            var original = await File.ReadAllBytesAsync(image, ct);
            var summaries = new Dictionary<string, JsonElement>();
            foreach (var sink in new[] { "m1", "m2", "t1" })
            {
                var summary = JsonDocument.Parse(File.ReadLines(Path.Combine(runDir, sink, "stdout")).Last(l => l.StartsWith('{'))).RootElement;
                summaries[sink] = summary;
                var stored = await File.ReadAllBytesAsync(summary.GetProperty("objects")[0].GetProperty("path").GetString()!, ct);
                Assert.True(original.AsSpan().SequenceEqual(stored), $"{sink}'s copy differs from the image");
            }
            foreach (var sink in new[] { "m1", "m2" })
            {
                // The sink took the stream by multicast (its log says so), not by TCP alone.
                Assert.Contains("multicast 239.77.8.1:7100 joined", File.ReadAllText(Path.Combine(runDir, sink, "stderr")), StringComparison.Ordinal);
            }
            Assert.Empty(await TopologyScript.NamespacesOfAsync(report.GetProperty("run_id").GetString()!, ct));
            return new Run(nodes, summaries, runDir, dir);
        }
        catch
        {
            dir.Dispose();
            throw;
        }
    }

    private static string Logs(string runDir)
    {
        var text = "";
        foreach (var host in new[] { "src", "m1", "m2", "t1" })
        {
            var err = Path.Combine(runDir, host, "stderr");
            if (File.Exists(err))
            {
                text += $"\n--- {host} stderr ---\n" + string.Join('\n', File.ReadLines(err).TakeLast(15));
            }
        }
        return text;
    }
}
