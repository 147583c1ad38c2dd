using System.Text.Json;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Topology;

/// <summary>
/// perf/topology.sh with real processes in network namespaces: a source and two sinks on 100 Mbit/s
/// links end with identical copies and a per-node report; a failing node fails the run; either way no
/// namespace or process of the run is left.
/// </summary>
public sealed class TopologyScriptTests
{
    private const long ImageSize = 8 << 20;

    [Fact]
    public async Task A_source_and_two_sinks_on_rate_limited_links_end_identical_with_a_report_and_leave_nothing()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", ImageSize, seed: 81);
        var name = TopologyScript.UniqueName("topo");
        var file = dir.File("fanout.topo");
        await File.WriteAllTextAsync(file, $"""
            # source -> two sinks, every link 100 Mbit/s
            name {name}
            link 100mbit
            timeout 120
            host src source --image {"{input}"} --listen {"{addr}"}:7000 --sessions 2 --json
            host s1  sink   --connect {"{addr:src}"}:7000 --store {"{dir:s1}"} --json
            host s2  sink   --connect {"{addr:src}"}:7000 --store {"{dir:s2}"} --json
            """, ct);
        var runDir = dir.File("run");
        var json = dir.File("report.json");

        var result = await TopologyScript.RunAsync(["run", file, "--json", json, "--dir", runDir, "--set", $"input={image}", "--bin", TopologyScript.Bin], ct);

        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = TopologyScript.ReadJson(json);
        Assert.True(report.GetProperty("ok").GetBoolean());
        var nodes = report.GetProperty("nodes").EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
        Assert.Equal(["src", "s1", "s2"], nodes.Keys);
        foreach (var node in nodes.Values)
        {
            Assert.Equal(0, node.GetProperty("exit_code").GetInt32());
            Assert.True(node.GetProperty("bytes_in").GetInt64() > 0);
            Assert.True(node.GetProperty("bytes_out").GetInt64() > 0);
            Assert.True(node.GetProperty("seconds").GetDouble() > 0);
            Assert.Equal(0, node.GetProperty("nacks").GetInt64());
        }
        // The source sent both copies: at least what each sink received, and each sink at least the compressed image.
        var received = nodes["s1"].GetProperty("bytes_in").GetInt64() + nodes["s2"].GetProperty("bytes_in").GetInt64();
        Assert.True(nodes["src"].GetProperty("bytes_out").GetInt64() >= received * 0.95, $"source out {nodes["src"].GetProperty("bytes_out")}, sinks in {received}");

        var original = await File.ReadAllBytesAsync(image, ct);
        foreach (var sink in new[] { "s1", "s2" })
        {
            var summary = JsonDocument.Parse(File.ReadLines(Path.Combine(runDir, sink, "stdout")).Last(l => l.StartsWith('{'))).RootElement;
            var stored = await File.ReadAllBytesAsync(summary.GetProperty("objects")[0].GetProperty("path").GetString()!, ct);
            Assert.True(original.AsSpan().SequenceEqual(stored), $"{sink}'s copy differs from the image");
        }

        var runId = report.GetProperty("run_id").GetString()!;
        Assert.Empty(await TopologyScript.NamespacesOfAsync(runId, ct));
        Assert.Empty(TopologyScript.ProcessesNaming(runDir));
        Assert.False(Directory.Exists($"/run/streamclone-topology/{runId}"));
    }

    [Fact]
    public async Task A_sink_pointed_at_a_wrong_port_fails_the_run_and_everything_is_still_torn_down()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", 1 << 20, seed: 82);
        var name = TopologyScript.UniqueName("fail");
        var file = dir.File("fail.topo");
        await File.WriteAllTextAsync(file, $"""
            name {name}
            host src source --image {"{input}"} --listen {"{addr}"}:7000
            host s1  sink   --connect {"{addr:src}"}:7999 --store {"{dir:s1}"}
            """, ct);
        var runDir = dir.File("run");
        var json = dir.File("report.json");

        var result = await TopologyScript.RunAsync(["run", file, "--json", json, "--dir", runDir, "--set", $"input={image}", "--timeout", "60", "--bin", TopologyScript.Bin], ct);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("s1 exited with code 1", result.Stderr, StringComparison.Ordinal);
        var report = TopologyScript.ReadJson(json);
        Assert.False(report.GetProperty("ok").GetBoolean());
        var nodes = report.GetProperty("nodes").EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
        Assert.Equal(1, nodes["s1"].GetProperty("exit_code").GetInt32());
        Assert.True(nodes["src"].GetProperty("stopped_by_script").GetBoolean());
        var runId = report.GetProperty("run_id").GetString()!;
        Assert.Empty(await TopologyScript.NamespacesOfAsync(runId, ct));
        Assert.Empty(TopologyScript.ProcessesNaming(runDir));
        Assert.False(Directory.Exists($"/run/streamclone-topology/{runId}"));
    }
}
