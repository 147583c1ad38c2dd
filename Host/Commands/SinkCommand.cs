using System.CommandLine;
using System.Text.Json;
using StreamClone.Perf;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Sink;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Host.Commands;

internal static class SinkCommand
{
    public static Command Create()
    {
        var connect = new Option<string>("--connect")
        {
            Description = "Source or relay to pull the snapshot from (HOST:PORT), or several in order of preference (A,B,…): when the upstream dies mid-stream the sink reattaches to the next (then to the hints in the offer) and resumes.",
            Required = true,
        };
        var reattachTimeout = new Option<double>("--reattach-timeout")
        {
            Description = "Seconds a sink keeps trying its other upstreams after the one it pulls from died (readers wait as long); then it ends with one line.",
            DefaultValueFactory = _ => new UpstreamClientOptions().ReattachTimeout.TotalSeconds,
        };
        var store = new Option<string>("--store") { Description = "Store directory (content-addressed across snapshots; resumes after a crash).", Required = true };
        var probeReads = new Option<int>("--probe-reads") { Description = "Issue this many random demand reads while the bulk stream runs and report their latency.", DefaultValueFactory = _ => 0 };
        var probeSpacing = new Option<double>("--probe-spacing-ms") { Description = "Pause between probe reads.", DefaultValueFactory = _ => 2.0 };
        var maxSnapshot = new Option<string>("--max-snapshot-bytes")
        {
            Description = "Refuse offers larger than this (sum of the objects' sizes, e.g. 512G or 4T). An offer must also fit the store's free space.",
            DefaultValueFactory = _ => SizeParser.Format(new ChunkStoreOptions().MaxSnapshotBytes),
        };
        var freeSpaceMargin = new Option<string>("--free-space-margin")
        {
            Description = "Free space an offer must leave on the store's file system beyond its full size (e.g. 0, 256M, 1G).",
            DefaultValueFactory = _ => SizeParser.Format(new ChunkStoreOptions().FreeSpaceMarginBytes),
        };
        var multicastInterface = new Option<string?>("--multicast-interface") { Description = "Ask the upstream for the bulk stream by multicast and take it on this interface (by name); the TCP lane stays for control, and brings the rest if multicast cannot." };
        var parallelism = CommonOptions.Parallelism();
        var json = CommonOptions.Json();
        var logLevel = CommonOptions.LogLevel();
        var timeouts = CommonOptions.Timeouts();
        var security = CommonOptions.Security();
        var metrics = MetricsOption.Create();
        var command = new Command("sink", "Pull a snapshot into a local store: verify every chunk's hash, assemble the objects, answer reads on demand ahead of the bulk stream.")
        {
            connect, reattachTimeout, store, maxSnapshot, freeSpaceMargin, probeReads, probeSpacing, parallelism, json, logLevel,
            metrics, multicastInterface,
        };
        foreach (var option in timeouts.All.Concat(security.All))
        {
            command.Options.Add(option);
        }
        command.SetAction(async (result, ct) =>
        {
            using var logging = HostServices.CreateLogging(result.GetValue(logLevel));
            var logger = logging.CreateLogger("sink");
            // What the connection to the source is secured with (null: plain TCP, --insecure).
            var tls = security.Resolve(result, logger);
            using var exporter = MetricsOption.Start(result, metrics);
            var asJson = result.GetValue(json);
            var storeOptions = new ChunkStoreOptions
            {
                MaxSnapshotBytes = SizeParser.Parse(result.GetValue(maxSnapshot)!),
                FreeSpaceMarginBytes = SizeParser.Parse(result.GetValue(freeSpaceMargin)!),
            };
            using var chunkStore = ChunkStore.Open(result.GetValue(store)!, logger, storeOptions);
            var options = new UpstreamClientOptions
            {
                Upstream = new UpstreamOptions { Parallelism = result.GetValue(parallelism), Tls = tls, MulticastInterface = result.GetValue(multicastInterface) },
                ReattachTimeout = TimeSpan.FromSeconds(result.GetValue(reattachTimeout)),
            };
            var transport = timeouts.Apply(result, TransportOptions.Default);
            var candidates = result.GetValue(connect)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            await using var client = new UpstreamClient(candidates, chunkStore, options, transport, logger);
            // The progress gauges (status draws them): registered here, beside the session's owner, not in the session;
            // after a reattach they follow the current session (the same store snapshot).
            using var progress = SnapshotProgress.Register(MetricRole.Sink, () => client.Current?.Snapshot is { } snapshot ? (snapshot.PresentChunks, snapshot.TotalChunks) : (0, 0));
            var probe = new DemandProbe();
            var manifest = await probe.RunBesideAsync(client, result.GetValue(probeReads), TimeSpan.FromMilliseconds(result.GetValue(probeSpacing)), seed: 42,
                HostServices.Interactive(asJson) ? run => ProgressView.ShowSinkAsync(client.FirstSession.Result, run) : null, ct);
            var session = client.Current!;

            var total = manifest.Objects.Sum(o => o.Size);
            var summary = new SinkSummary(
                SnapshotId: manifest.SnapshotId,
                Source: session.Source.ToString(),
                Objects: [.. manifest.Objects.Select(o => new SinkObjectSummary(o.Name, o.Kind.ToString(), o.Size, session.Snapshot.GetObjectPath(o.Id)))],
                Bytes: total,
                WireBytes: session.WireBytes,
                PayloadBytes: session.Stats.PayloadBytes,
                Seconds: Math.Round(session.Seconds, 3),
                Mbps: Math.Round(total / 1e6 / Math.Max(session.Seconds, 1e-9), 1),
                DataChunks: session.Stats.DataChunks,
                ZeroChunks: session.Stats.ZeroChunks,
                KnownChunks: session.Stats.KnownChunks,
                DemandReads: probe.DemandLatenciesMs.Count,
                DemandHits: probe.Hits,
                DemandP50Ms: Round(DemandProbe.Percentile(probe.DemandLatenciesMs, 50)),
                DemandP99Ms: Round(DemandProbe.Percentile(probe.DemandLatenciesMs, 99)),
                DemandMaxMs: Round(probe.DemandLatenciesMs.DefaultIfEmpty(double.NaN).Max()),
                PeakRssMb: ProcessStats.PeakRssMiB(),
                GcPauseMs: ProcessStats.GcPauseMs(),
                Gen2Collections: ProcessStats.Gen2Collections());
            if (asJson)
            {
                Console.WriteLine(JsonSerializer.Serialize(summary, HostServices.Json));
            }
            else
            {
                SummaryView.SinkTable(summary);
            }
            return 0;
        });
        return command;
    }

    private static double? Round(double value) => double.IsNaN(value) ? null : Math.Round(value, 3);
}

internal sealed record SinkObjectSummary(string Name, string Kind, long Size, string Path);

internal sealed record SinkSummary(
    string SnapshotId,
    string Source,
    IReadOnlyList<SinkObjectSummary> Objects,
    long Bytes,
    long WireBytes,
    long PayloadBytes,
    double Seconds,
    double Mbps,
    long DataChunks,
    long ZeroChunks,
    long KnownChunks,
    int DemandReads,
    int DemandHits,
    double? DemandP50Ms,
    double? DemandP99Ms,
    double? DemandMaxMs,
    double PeakRssMb,
    double GcPauseMs,
    int Gen2Collections);
