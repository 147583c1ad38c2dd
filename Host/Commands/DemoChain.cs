using System.Globalization;
using System.Text;
using System.Text.Json;
using StreamClone.Host.Bench;
using StreamClone.Perf;
using StreamClone.Processes;

namespace StreamClone.Host.Commands;

/// <summary>
/// The demo's deployment: the source process in its own network namespace, then relay A → relay B → sinks in
/// theirs (the last sink on B's multicast), built, run and torn down by perf/topology.sh.
/// </summary>
internal static class DemoChain
{
    private const int Port = 7000;

    /// <summary>The path the demo's snapshot takes, as one line.</summary>
    public static string Describe(int sinks) =>
        $"source → relay A → relay B → {sinks} sinks ({sinks - 1} TCP children of B, 1 on B's multicast)";

    /// <summary>The topology file: one host per process, a sink's store in its host's directory.</summary>
    public static string Topology(string name, string qmpSocket, string liveWorkDir, int sinks, IReadOnlyList<string> security)
    {
        var sec = string.Join(' ', security);
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"name {name}");
        // No rate limit: the demo shows the path, the bench measures links.
        text.AppendLine("link off");
        text.AppendLine("timeout 600");
        // The QMP and NBD sockets are unix sockets: the source reaches the VM from its namespace through the file system.
        text.AppendLine(CultureInfo.InvariantCulture,
            $"host src source --qmp {qmpSocket} --work-dir {liveWorkDir} --listen {{addr}}:{Port} --sessions 1 --json {sec}");
        text.AppendLine(CultureInfo.InvariantCulture, $"host ra relay --upstream {{addr:src}}:{Port} --listen {{addr}}:{Port} --cache {{dir}} {sec}");
        text.AppendLine(CultureInfo.InvariantCulture,
            $"host rb relay --upstream {{addr:ra}}:{Port} --listen {{addr}}:{Port} --cache {{dir}} --multicast {FanoutSettings.MulticastGroup} --interface eth0 --multicast-receivers 1 {sec}");
        for (var i = 1; i <= sinks; i++)
        {
            var multicast = i == sinks ? "--multicast-interface eth0" : "";
            text.AppendLine(CultureInfo.InvariantCulture, $"host s{i} sink --connect {{addr:rb}}:{Port} --store {{dir}} --json {multicast} {sec}");
        }
        return text.ToString();
    }

    /// <summary>One sink's summary line (its stdout's JSON).</summary>
    public sealed record SinkResult(string Host, string SnapshotId, string Store, IReadOnlyList<string> ObjectPaths, long WireBytes, double Seconds);

    public static SinkResult ReadSink(string runDir, string host)
    {
        var line = File.ReadLines(Path.Combine(runDir, host, "stdout")).LastOrDefault(l => l.StartsWith('{'))
            ?? throw new FanoutBenchException($"sink {host} printed no summary");
        using var doc = JsonDocument.Parse(line);
        var root = doc.RootElement;
        return new SinkResult(host, root.GetProperty("snapshot_id").GetString()!, Path.Combine(runDir, host, "data"),
            [.. root.GetProperty("objects").EnumerateArray().Select(o => o.GetProperty("path").GetString()!)],
            root.GetProperty("wire_bytes").GetInt64(), root.GetProperty("seconds").GetDouble());
    }

    /// <summary>Whether every sink holds the same bytes as the first, object by object.</summary>
    public static async Task<int> IdenticalToFirstAsync(IReadOnlyList<SinkResult> sinks, CancellationToken ct)
    {
        var identical = 1;
        foreach (var sink in sinks.Skip(1))
        {
            var same = sink.SnapshotId == sinks[0].SnapshotId && sink.ObjectPaths.Count == sinks[0].ObjectPaths.Count;
            for (var i = 0; same && i < sink.ObjectPaths.Count; i++)
            {
                same = await FileCompare.SameContentAsync(sinks[0].ObjectPaths[i], sink.ObjectPaths[i], ct);
            }
            identical += same ? 1 : 0;
        }
        return identical;
    }

    /// <summary>The node binary: this program, started again in each namespace.</summary>
    public static string NodeBin()
    {
        var self = ProcessCommand.ThisProgram("node");
        return string.Join(' ', [self.FileName, .. self.Arguments]);
    }
}
