using System.Text.Json;
using StreamClone.Tests.Integration.Infrastructure;
using StreamClone.Tests.Integration.Topology;

namespace StreamClone.Tests.Integration.Relay;

/// <summary>A relay chain in network namespaces through perf/topology.sh: source → relay A → relay B → two TCP sinks on 100 Mbit/s links.</summary>
public sealed class RelayTopologyTests
{
    [Fact]
    public async Task Source_relay_relay_two_tcp_sinks_on_rate_limited_links_end_identical()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", 8 << 20, seed: 96);
        var name = TopologyScript.UniqueName("relay");
        var file = dir.File("chain.topo");
        await File.WriteAllTextAsync(file, $"""
            # source -> relay A -> relay B -> two TCP sinks, every link 100 Mbit/s
            name {name}
            link 100mbit
            timeout 180
            host src source --image {"{input}"} --listen {"{addr}"}:7000 --sessions 1 --json
            host ra  relay  --upstream {"{addr:src}"}:7000 --listen {"{addr}"}:7001 --cache {"{dir:ra}"} --sessions 1 --json
            host rb  relay  --upstream {"{addr:ra}"}:7001 --listen {"{addr}"}:7002 --cache {"{dir:rb}"} --sessions 2 --json
            host s1  sink   --connect {"{addr:rb}"}:7002 --store {"{dir:s1}"} --json
            host s2  sink   --connect {"{addr:rb}"}:7002 --store {"{dir:s2}"} --json
            """, ct);
        var runDir = dir.File("run");
        var json = dir.File("report.json");

        var result = await TopologyScript.RunAsync(["run", file, "--json", json, "--dir", runDir, "--set", $"input={image}", "--bin", TopologyScript.Bin], ct);

        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = TopologyScript.ReadJson(json);
        Assert.True(report.GetProperty("ok").GetBoolean());
        var nodes = report.GetProperty("nodes").EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
        // The source fed only relay A: its egress is about one copy, not one per sink.
        var received = nodes["s1"].GetProperty("bytes_in").GetInt64();
        Assert.True(nodes["src"].GetProperty("bytes_out").GetInt64() < received * 1.5, $"source out {nodes["src"].GetProperty("bytes_out")}, a sink in {received}");

        var original = await File.ReadAllBytesAsync(image, ct);
        foreach (var sink in new[] { "s1", "s2" })
        {
            Assert.Equal(0, nodes[sink].GetProperty("exit_code").GetInt32());
            var summary = JsonDocument.Parse(File.ReadLines(Path.Combine(runDir, sink, "stdout")).Last(l => l.StartsWith('{'))).RootElement;
            var stored = await File.ReadAllBytesAsync(summary.GetProperty("objects")[0].GetProperty("path").GetString()!, ct);
            Assert.True(original.AsSpan().SequenceEqual(stored), $"{sink}'s copy differs from the image");
        }
        var runId = report.GetProperty("run_id").GetString()!;
        Assert.Empty(await TopologyScript.NamespacesOfAsync(runId, ct));
        Assert.Empty(TopologyScript.ProcessesNaming(runDir));
    }
}
