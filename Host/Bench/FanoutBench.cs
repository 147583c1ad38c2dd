using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using StreamClone.Perf;
using StreamClone.Processes;

namespace StreamClone.Host.Bench;

/// <summary>How the sinks of a fan-out run are fed.</summary>
internal enum FanoutMode
{
    /// <summary>The source feeds every sink itself over TCP (no relays).</summary>
    Unicast,

    /// <summary>source → relay A → relay B; the sinks are B's TCP children.</summary>
    Tree,

    /// <summary>source → relay A → relay B; the sinks sit on B's segment and receive B's multicast (TCP control lane to B).</summary>
    Multicast,
}

/// <summary>One fan-out run: what runs where, on which links.</summary>
internal sealed record FanoutSettings(int Sinks, FanoutMode Mode, string Input, int LossPercent, int LinkMbit, int ProbeReads, TimeSpan Timeout, string WorkDir)
{
    /// <summary>--pki/--node/--insecure for every node.</summary>
    public IReadOnlyList<string> SecurityArguments { get; init; } = [];

    /// <summary>Multicast at a fixed 95% of the link (floor = ceiling), as the baseline's uftp -C none; else the rate follows the receivers.</summary>
    public bool FixedRate { get; init; }

    /// <summary>The multicast group relay B sends to (administratively scoped; the namespaces' bridge carries it, nothing else does).</summary>
    public const string MulticastGroup = "239.77.0.1:7100";
}

/// <summary>
/// `bench fanout`: a topology file (source → relay A → relay B → N sinks, or source → N sinks) run through
/// perf/topology.sh (namespaces, rate-limited links, nftables loss), then each sink's copy compared byte for byte
/// with the input. <see cref="FanoutBaseline"/> runs the compress + uftp + decompress comparison on the same links.
/// </summary>
internal static class FanoutBench
{
    private const int Port = 7000;

    /// <summary>The node that sends to the sinks (its eth0 tx is what fan-out costs the feeder).</summary>
    public static string Feeder(FanoutMode mode) => mode == FanoutMode.Unicast ? "src" : "rb";

    /// <summary>The topology file of one run (a person can read it: it is kept in the run directory as fanout.topo).</summary>
    public static string Topology(FanoutSettings s, string name)
    {
        var security = string.Join(' ', s.SecurityArguments);
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"name {name}");
        text.AppendLine(CultureInfo.InvariantCulture, $"link {s.LinkMbit}mbit");
        text.AppendLine(CultureInfo.InvariantCulture, $"timeout {(int)s.Timeout.TotalSeconds}");
        // The source exits once its direct children stored the snapshot: every sink (unicast) or relay A.
        var sessions = s.Mode == FanoutMode.Unicast ? s.Sinks : 1;
        text.AppendLine(CultureInfo.InvariantCulture, $"host src source --image {{input}} --listen {{addr}}:{Port} --sessions {sessions} --json {security}");
        var upstream = "src";
        if (s.Mode != FanoutMode.Unicast)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"host ra relay --upstream {{addr:src}}:{Port} --listen {{addr}}:{Port} --cache {{dir}} {security}");
            // The send rate's ceiling at 95% of the link (bytes/s), as the baseline's uftp: above it tbf would drop for every receiver;
            // sending starts once every sink joined (as uftp's closed group), not to an empty group.
            var multicast = s.Mode == FanoutMode.Multicast
                ? $"--multicast {FanoutSettings.MulticastGroup} --interface eth0 --max-rate {s.LinkMbit * 118_750L} --multicast-receivers {s.Sinks}"
                    + (s.FixedRate ? $" --min-rate {s.LinkMbit * 118_750L}" : "")
                : "";
            text.AppendLine(CultureInfo.InvariantCulture, $"host rb relay --upstream {{addr:ra}}:{Port} --listen {{addr}}:{Port} --cache {{dir}} {multicast} {security}");
            upstream = "rb";
        }
        for (var i = 1; i <= s.Sinks; i++)
        {
            // The first sink measures demand latency (two relays below the source in tree and multicast modes).
            var probe = i == 1 ? s.ProbeReads : 0;
            var multicast = s.Mode == FanoutMode.Multicast ? "--multicast-interface eth0" : "";
            text.AppendLine(CultureInfo.InvariantCulture,
                $"host s{i} sink --connect {{addr:{upstream}}}:{Port} --store {{dir}} --json --probe-reads {probe} {multicast} {security}");
        }
        if (s.LossPercent > 0)
        {
            // One receiver loses P% of the UDP arriving at it (the last sink: the others see a clean group).
            text.AppendLine(CultureInfo.InvariantCulture, $"loss s{s.Sinks} {s.LossPercent}%");
        }
        return text.ToString();
    }

    public static async Task<Dictionary<string, object?>> RunAsync(FanoutSettings s, Action<string> log, CancellationToken ct)
    {
        var runDir = Path.Combine(s.WorkDir, $"fanout-{s.Mode.ToString().ToLowerInvariant()}");
        Directory.CreateDirectory(runDir);
        var topo = Path.Combine(s.WorkDir, $"fanout-{s.Mode.ToString().ToLowerInvariant()}.topo");
        await File.WriteAllTextAsync(topo, Topology(s, $"fan-{s.Mode.ToString().ToLowerInvariant()[0]}{s.Sinks}"), ct);
        log($"bench fanout: {s.Mode.ToString().ToLowerInvariant()}, {s.Sinks} sink(s), links {s.LinkMbit} Mbit/s, loss {s.LossPercent}% (topology {topo})");

        var self = ProcessCommand.ThisProgram("node");
        var bin = string.Join(' ', [self.FileName, .. self.Arguments]);
        var run = await TopologyRun.RunAsync(topo, runDir, bin, [$"input={Path.GetFullPath(s.Input)}"], s.Timeout, ct);
        var nodes = run.Nodes;
        var sinks = Enumerable.Range(1, s.Sinks).Select(i => $"s{i}").ToArray();
        if (!run.Ok)
        {
            throw new FanoutBenchException($"the fan-out run failed: {run.Error} (logs in {runDir})");
        }

        var identical = 0;
        long? compressed = null;
        double? demandP99 = null;
        int demandReads = 0;
        double slowestSink = 0;
        foreach (var sink in sinks)
        {
            using var summary = JsonDocument.Parse(LastLine(Path.Combine(runDir, sink, "stdout")));
            var root = summary.RootElement;
            var copy = root.GetProperty("objects")[0].GetProperty("path").GetString()!;
            if (await FileCompare.SameContentAsync(s.Input, copy, ct))
            {
                identical++;
            }
            // A fresh sink's bulk payload is the encoded stream's payload; the probing sink also pulled demand answers.
            var payload = root.GetProperty("payload_bytes").GetInt64();
            compressed = compressed is null ? payload : Math.Min(compressed.Value, payload);
            slowestSink = Math.Max(slowestSink, root.GetProperty("seconds").GetDouble());
            if (sink == "s1")
            {
                demandReads = root.GetProperty("demand_reads").GetInt32();
                demandP99 = root.TryGetProperty("demand_p99_ms", out var p99) && p99.ValueKind == JsonValueKind.Number ? p99.GetDouble() : null;
            }
        }
        var sourceStart = TopologyRun.NodeTime(runDir, "src", "start");
        var lastSinkEnd = sinks.Max(h => TopologyRun.NodeTime(runDir, h, "end"));
        var lastSinkStart = sinks.Max(h => TopologyRun.NodeTime(runDir, h, "start"));
        var feeder = nodes.Single(n => n.Name == Feeder(s.Mode));
        var report = new Dictionary<string, object?>
        {
            ["mode"] = s.Mode.ToString().ToLowerInvariant(),
            ["sinks"] = s.Sinks,
            ["link_mbit"] = s.LinkMbit,
            ["loss_pct"] = s.LossPercent,
            ["fixed_rate"] = s.Mode == FanoutMode.Multicast && s.FixedRate,
            ["input_bytes"] = new FileInfo(s.Input).Length,
            ["seconds"] = Math.Round(lastSinkEnd - sourceStart, 3),
            // Hosts start one after another (each once its metrics answer): the last sink starts this long after the source.
            ["last_sink_started_after_s"] = Math.Round(lastSinkStart - sourceStart, 3),
            ["slowest_sink_seconds"] = Math.Round(slowestSink, 3),
            ["feeder"] = feeder.Name,
            ["feeder_egress_bytes"] = feeder.BytesOut,
            ["compressed_bytes"] = compressed,
            ["feeder_vs_compressed"] = compressed is > 0 ? Math.Round((double)feeder.BytesOut / compressed.Value, 3) : null,
            ["egress_bytes"] = nodes.ToDictionary(n => n.Name, n => n.BytesOut),
            ["identical_sinks"] = identical,
            // NACKs as the receivers sent them (a sender counts the same NACKs again as received).
            ["nacks"] = nodes.Where(n => sinks.Contains(n.Name)).Sum(n => n.Nacks),
            ["repairs"] = nodes.Sum(n => n.Repairs),
            ["cpu_busy_pct"] = run.CpuBusyPct,
            ["demand_reads"] = demandReads,
            ["demand_p99_ms"] = demandP99,
        };
        return report;
    }

    private static string LastLine(string file) =>
        File.ReadLines(file).LastOrDefault(l => l.StartsWith('{'))
            ?? throw new FanoutBenchException($"{file}: no JSON summary (the node did not finish)");
}

/// <summary>One node's line of perf/topology.sh's JSON report.</summary>
internal sealed record TopologyNode(string Name, string Role, long BytesIn, long BytesOut, long Nacks, long Repairs, double? Seconds, int? ExitCode);

/// <summary>What one perf/topology.sh run reported, with the machine's CPU use over it.</summary>
internal sealed record TopologyRunResult(bool Ok, string? Error, double Seconds, IReadOnlyList<TopologyNode> Nodes, double CpuBusyPct);

/// <summary>perf/topology.sh `run` as the benches call it: the namespaces, links and teardown are the script's.</summary>
internal static class TopologyRun
{
    public static async Task<TopologyRunResult> RunAsync(string topology, string runDir, string bin, IEnumerable<string> sets, TimeSpan timeout, CancellationToken ct)
    {
        // The script's own tools (a fresh machine has no jq); it checks ip, tc and ss itself.
        ToolInstaller.EnsureAptPackages("jq", "curl");
        var json = Path.Combine(runDir, "topology.json");
        List<string> args = [FindScript(), "run", topology, "--json", json, "--dir", runDir, "--bin", bin, "--timeout", ((int)timeout.TotalSeconds).ToString(CultureInfo.InvariantCulture)];
        foreach (var set in sets)
        {
            args.AddRange(["--set", set]);
        }
        var cpuBefore = CpuTimes.Read();
        var result = await ProcessRunner.RunAsync(new ProcessCommand("bash", args) { Name = "topology.sh" }, ct, check: false);
        var cpu = CpuTimes.Read().BusyPercentSince(cpuBefore);
        if (!File.Exists(json))
        {
            throw new FanoutBenchException($"perf/topology.sh failed before it ran the nodes: {result.Stderr.Trim().Split('\n').LastOrDefault()}");
        }
        using var doc = JsonDocument.Parse(await File.ReadAllTextAsync(json, ct));
        var root = doc.RootElement;
        var nodes = root.GetProperty("nodes").EnumerateArray().Select(n => new TopologyNode(
            n.GetProperty("name").GetString()!, n.GetProperty("role").GetString()!,
            Long(n, "bytes_in"), Long(n, "bytes_out"), Long(n, "nacks"), Long(n, "repairs"),
            n.GetProperty("seconds").ValueKind == JsonValueKind.Number ? n.GetProperty("seconds").GetDouble() : null,
            n.GetProperty("exit_code").ValueKind == JsonValueKind.Number ? n.GetProperty("exit_code").GetInt32() : null)).ToList();
        return new TopologyRunResult(root.GetProperty("ok").GetBoolean(), root.GetProperty("error").GetString(), root.GetProperty("seconds").GetDouble(), nodes, cpu);
    }

    /// <summary>A node's start or end (perf/topology.sh writes nanoseconds since the epoch), in seconds.</summary>
    public static double NodeTime(string runDir, string host, string which) =>
        long.Parse(File.ReadAllText(Path.Combine(runDir, host, which)).Trim(), CultureInfo.InvariantCulture) / 1e9;

    private static long Long(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : 0;

    private static string FindScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var script = Path.Combine(dir.FullName, "perf", "topology.sh");
            if (File.Exists(script))
            {
                return script;
            }
        }
        throw new FanoutBenchException("perf/topology.sh not found above the program (run it from the repository: ./streamclone bench fanout)");
    }
}

/// <summary>The machine's CPU time from the first line of /proc/stat (clock ticks).</summary>
internal readonly record struct CpuTimes(long Busy, long Total)
{
    public static CpuTimes Read()
    {
        // cpu user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Take(8).Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
        var total = fields.Sum();
        return new CpuTimes(total - fields[3] - fields[4], total);
    }

    public double BusyPercentSince(CpuTimes before) =>
        Total == before.Total ? 0 : Math.Round(100.0 * (Busy - before.Busy) / (Total - before.Total), 1);
}

/// <summary>A fan-out run that could not be measured: one line for the CLI.</summary>
internal sealed class FanoutBenchException(string message) : Exception(message);

/// <summary>
/// The comparison the issue names: the input compressed with `zstd -1 -T2`, sent with uftp (fixed rate at 95% of the
/// link, no encryption) to N uftpd receivers in namespaces on the same links, and `zstd -d` on every receiver.
/// </summary>
internal static class FanoutBaseline
{
    public static async Task<Dictionary<string, object?>> RunAsync(FanoutSettings s, Action<string> log, CancellationToken ct)
    {
        ToolInstaller.EnsureAptPackages("zstd", "uftp");
        var dir = Path.Combine(s.WorkDir, "baseline");
        var runDir = Path.Combine(dir, "run");
        Directory.CreateDirectory(runDir);
        var compressedFile = Path.Combine(dir, "input.zst");

        var clock = Stopwatch.StartNew();
        await ProcessRunner.RunAsync(new ProcessCommand("zstd", ["-1", "-T2", "-q", "-f", "-o", compressedFile, s.Input]), ct);
        var compressSeconds = clock.Elapsed.TotalSeconds;

        // Receivers first (10.77.0.1..N), the sender last: a closed group (-H) starts as soon as every receiver answered.
        var topo = Path.Combine(dir, "baseline.topo");
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"name fan-base{s.Sinks}");
        text.AppendLine(CultureInfo.InvariantCulture, $"link {s.LinkMbit}mbit");
        text.AppendLine(CultureInfo.InvariantCulture, $"timeout {(int)s.Timeout.TotalSeconds}");
        text.AppendLine("metrics off");
        text.AppendLine("await src");
        var receivers = Enumerable.Range(1, s.Sinks).Select(i => $"r{i}").ToArray();
        foreach (var r in receivers)
        {
            // -d: foreground, log to stderr; -D: the host's directory in the run (created before the node starts).
            text.AppendLine(CultureInfo.InvariantCulture, $"host {r} uftpd -d -x 1 -I eth0 -D {{run}}/{r}");
        }
        var clients = string.Join(',', Enumerable.Range(1, s.Sinks).Select(i => $"10.77.0.{i}"));
        // Fixed rate (-C none) at 95% of the link in Kbit/s, no encryption (-Y none), the sender's interface, the receivers named.
        var rateKbps = s.LinkMbit * 950;
        text.AppendLine(CultureInfo.InvariantCulture, $"host src uftp -x 1 -C none -R {rateKbps} -Y none -I eth0 -H {clients} {compressedFile}");
        if (s.LossPercent > 0)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"loss r{s.Sinks} {s.LossPercent}%");
        }
        await File.WriteAllTextAsync(topo, text.ToString(), ct);
        log($"bench fanout --baseline: zstd -1 -T2 ({compressSeconds:F2} s), uftp at {rateKbps} Kbit/s to {s.Sinks} receiver(s) (topology {topo})");
        var run = await TopologyRun.RunAsync(topo, runDir, "env", [], s.Timeout, ct);
        if (!run.Ok)
        {
            throw new FanoutBenchException($"the uftp baseline failed: {run.Error} (logs in {runDir})");
        }
        var sendSeconds = run.Nodes.Single(n => n.Name == "src").Seconds ?? run.Seconds;
        var sender = run.Nodes.Single(n => n.Name == "src");

        // Every receiver decompresses at once, as N hosts would (here on the same two cores).
        clock.Restart();
        var outputs = receivers.Select(r => Path.Combine(runDir, r, "out.img")).ToArray();
        await Task.WhenAll(receivers.Select((r, i) => ProcessRunner.RunAsync(
            new ProcessCommand("zstd", ["-d", "-q", "-f", "-o", outputs[i], Path.Combine(runDir, r, "input.zst")]), ct)));
        var decompressSeconds = clock.Elapsed.TotalSeconds;
        var identical = 0;
        foreach (var output in outputs)
        {
            if (await FileCompare.SameContentAsync(s.Input, output, ct))
            {
                identical++;
            }
        }
        var compressedBytes = new FileInfo(compressedFile).Length;
        return new Dictionary<string, object?>
        {
            ["baseline_seconds"] = Math.Round(compressSeconds + sendSeconds + decompressSeconds, 3),
            ["baseline_compress_seconds"] = Math.Round(compressSeconds, 3),
            ["baseline_send_seconds"] = Math.Round(sendSeconds, 3),
            ["baseline_decompress_seconds"] = Math.Round(decompressSeconds, 3),
            ["baseline_compressed_bytes"] = compressedBytes,
            ["baseline_sender_egress_bytes"] = sender.BytesOut,
            ["baseline_sender_vs_compressed"] = Math.Round((double)sender.BytesOut / compressedBytes, 3),
            ["baseline_identical"] = identical,
            ["baseline_cpu_busy_pct"] = run.CpuBusyPct,
        };
    }
}
