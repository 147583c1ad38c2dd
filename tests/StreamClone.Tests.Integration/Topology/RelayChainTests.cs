using System.Globalization;
using System.Text.Json;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Topology;

/// <summary>
/// The issue's test in namespaces (perf/topology.sh): source → relay A → relay B → 4 sinks, two on B's multicast
/// segment and two TCP children of B. All four end identical to the source: as is, with relay B SIGKILLed at a
/// random point (its sinks reattach to relay A), and with 5% of the UDP arriving at one multicast receiver dropped.
/// Every wait is bounded and the run's namespaces and processes are gone afterwards, also when a test fails.
/// </summary>
public sealed class RelayChainTests
{
    private const long ImageSize = 32 << 20;
    private static readonly string[] Sinks = ["m1", "m2", "t1", "t2"];

    [Fact]
    public async Task Four_sinks_two_by_multicast_and_two_by_tcp_below_two_relays_end_identical()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", ImageSize, seed: 91);
        var (runDir, report) = await RunAsync(dir, image, Topology(TopologyScript.UniqueName("chain"), lossAtM2: 0), ct);

        await AssertIdenticalAsync(image, runDir, ct);
        // The multicast sinks took the bulk stream from B's group, not from its TCP lanes.
        Assert.True(Metric(runDir, "rb", "streamclone_multicast_datagrams_sent_total") > 0, "relay B sent no multicast datagrams");
        await AssertNothingLeftAsync(report, runDir, ct);
    }

    [Fact]
    public async Task With_five_percent_multicast_loss_at_one_receiver_every_sink_ends_identical_through_repairs()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", ImageSize, seed: 92);
        var (runDir, report) = await RunAsync(dir, image, Topology(TopologyScript.UniqueName("loss"), lossAtM2: 5), ct);

        await AssertIdenticalAsync(image, runDir, ct);
        var nodes = report.GetProperty("nodes").EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
        // The lossy receiver noticed gaps and asked; the clean one had nothing to ask for that the lossy one caused.
        Assert.True(nodes["m2"].GetProperty("nacks").GetInt64() > 0, "the receiver behind 5% loss sent no NACK");
        Assert.True(nodes["rb"].GetProperty("repairs").GetInt64() > 0, "relay B repaired nothing");
        await AssertNothingLeftAsync(report, runDir, ct);
    }

    [Fact]
    public async Task Relay_b_killed_at_a_random_point_its_sinks_reattach_upward_and_all_end_identical()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", ImageSize, seed: 93);
        var name = TopologyScript.UniqueName("kill");
        // 20 Mbit/s links: the stream takes seconds, so the kill lands in it.
        var file = dir.File("chain.topo");
        await File.WriteAllTextAsync(file, Topology(name, lossAtM2: 0, link: "20mbit"), ct);
        var runDir = dir.File("run");
        var fraction = 0.1 + (Random.Shared.NextDouble() * 0.5);
        try
        {
            var up = await TopologyScript.RunAsync(["up", file, "--dir", runDir, "--set", $"input={image}", "--bin", TopologyScript.Bin], ct);
            Assert.True(up.ExitCode == 0, up.Stderr);
            var runId = (await File.ReadAllTextAsync(Path.Combine(runDir, "run-id"), ct)).Trim();

            // The random point: t1 holds that fraction of the snapshot (its progress gauge), then B dies without a word.
            using (var killDeadline = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                killDeadline.CancelAfter(TimeSpan.FromSeconds(90));
                while (await ProgressAsync(runDir, runId, "t1", killDeadline.Token) < fraction)
                {
                    Assert.False(File.Exists(Path.Combine(runDir, "t1", "rc")), "t1 ended before relay B could be killed");
                    await Task.Delay(50, killDeadline.Token);
                }
            }
            var pgid = (await File.ReadAllTextAsync($"/run/streamclone-topology/{runId}/pgid.rb", ct)).Trim();
            await ProcessRunner.RunAsync(new ProcessCommand("kill", ["-KILL", "--", $"-{pgid}"]), ct);

            // Every sink ends by itself (reattached to relay A) within a bounded time.
            using (var endDeadline = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                endDeadline.CancelAfter(TimeSpan.FromSeconds(180));
                foreach (var sink in Sinks)
                {
                    var rc = Path.Combine(runDir, sink, "rc");
                    using var watch = new FileSystemWatcher(Path.Combine(runDir, sink), "rc");
                    var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    watch.Created += (_, _) => ended.TrySetResult();
                    watch.Renamed += (_, _) => ended.TrySetResult();
                    watch.EnableRaisingEvents = true;
                    if (!File.Exists(rc))
                    {
                        await ended.Task.WaitAsync(endDeadline.Token);
                    }
                    Assert.True((await File.ReadAllTextAsync(rc, ct)).Trim() == "0",
                        $"{sink} failed after relay B died: {File.ReadLines(Path.Combine(runDir, sink, "stderr")).LastOrDefault()}");
                }
            }
            await AssertIdenticalAsync(image, runDir, ct);
            // The kill landed mid-stream: a sink saw relay B go and moved on.
            Assert.Contains(Sinks, s => File.ReadAllText(Path.Combine(runDir, s, "stderr")).Contains("Upstream 10.77.0.3:7000 is gone", StringComparison.Ordinal));
        }
        finally
        {
            await TopologyScript.RunAsync(["down", name], CancellationToken.None);
        }
        Assert.Empty(TopologyScript.ProcessesNaming(runDir));
    }

    /// <summary>
    /// src 10.77.0.1, relay A .2, relay B .3 (multicast to 239.77.0.1 on its eth0, at most 95% of 100 Mbit/s), then
    /// m1, m2 (multicast receivers) and t1, t2 (TCP); every sink may fall back to relay A.
    /// </summary>
    private static string Topology(string name, int lossAtM2, string link = "100mbit")
    {
        var lines = new List<string>
        {
            $"name {name}",
            $"link {link}",
            "timeout 180",
            "host src source --image {input} --listen {addr}:7000 --sessions 1 --json",
            "host ra relay --upstream {addr:src}:7000 --listen {addr}:7000 --cache {dir}",
            "host rb relay --upstream {addr:ra}:7000 --listen {addr}:7000 --cache {dir} --multicast 239.77.0.1:7100 --interface eth0 --max-rate 11M --multicast-receivers 2",
        };
        foreach (var sink in Sinks)
        {
            var multicast = sink.StartsWith('m') ? " --multicast-interface eth0" : "";
            lines.Add($"host {sink} sink --connect {{addr:rb}}:7000,{{addr:ra}}:7000 --store {{dir}} --json{multicast}");
        }
        if (lossAtM2 > 0)
        {
            lines.Add(string.Create(CultureInfo.InvariantCulture, $"loss m2 {lossAtM2}%"));
        }
        return string.Join('\n', lines) + "\n";
    }

    private static async Task<(string RunDir, JsonElement Report)> RunAsync(TempDir dir, string image, string topology, CancellationToken ct)
    {
        var file = dir.File("chain.topo");
        await File.WriteAllTextAsync(file, topology, ct);
        var runDir = dir.File("run");
        var json = dir.File("report.json");
        var result = await TopologyScript.RunAsync(["run", file, "--json", json, "--dir", runDir, "--set", $"input={image}", "--bin", TopologyScript.Bin], ct);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return (runDir, TopologyScript.ReadJson(json));
    }

    private static async Task AssertIdenticalAsync(string image, string runDir, CancellationToken ct)
    {
        var original = await File.ReadAllBytesAsync(image, ct);
        foreach (var sink in Sinks)
        {
            var summary = JsonDocument.Parse(File.ReadLines(Path.Combine(runDir, sink, "stdout")).Last(l => l.StartsWith('{'))).RootElement;
            var stored = await File.ReadAllBytesAsync(summary.GetProperty("objects")[0].GetProperty("path").GetString()!, ct);
            Assert.True(original.AsSpan().SequenceEqual(stored), $"{sink}'s copy differs from the image");
        }
    }

    private static async Task AssertNothingLeftAsync(JsonElement report, string runDir, CancellationToken ct)
    {
        var runId = report.GetProperty("run_id").GetString()!;
        Assert.Empty(await TopologyScript.NamespacesOfAsync(runId, ct));
        Assert.Empty(TopologyScript.ProcessesNaming(runDir));
    }

    /// <summary>A metric's sum in a node's last scrape (perf/topology.sh keeps it as RUNDIR/HOST/metrics).</summary>
    private static double Metric(string runDir, string host, string name) =>
        File.ReadLines(Path.Combine(runDir, host, "metrics"))
            .Where(l => l.StartsWith(name, StringComparison.Ordinal) && (l.Length == name.Length || l[name.Length] is ' ' or '{'))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));

    /// <summary>A sink's share of its snapshot's chunks present, from its metrics endpoint (0 before it knows the snapshot).</summary>
    private static async Task<double> ProgressAsync(string runDir, string runId, string host, CancellationToken ct)
    {
        var url = File.ReadLines(Path.Combine(runDir, "nodes.tsv")).Select(l => l.Split('\t')).Single(f => f[0] == host)[3];
        var scrape = await ProcessRunner.RunAsync(new ProcessCommand("ip", ["netns", "exec", $"sc-{runId}-br", "curl", "-sf", "--max-time", "2", url]), ct, check: false);
        double Sum(string metric) => scrape.Stdout.Split('\n')
            .Where(l => l.StartsWith(metric, StringComparison.Ordinal) && l.Length > metric.Length && l[metric.Length] is ' ' or '{')
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture));
        var total = Sum("streamclone_snapshot_chunks");
        return total > 0 ? Sum("streamclone_snapshot_chunks_present") / total : 0;
    }
}
