using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using StreamClone.Perf;
using StreamClone.Relay;
using StreamClone.Shared;
using StreamClone.Shared.Fanout;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Host.Commands;

internal static class RelayCommand
{
    public static Command Create()
    {
        var upstream = new Option<string>("--upstream")
        {
            Description = "Source or relay to pull from (HOST:PORT), or several in order of preference (A,B,…): when it dies the relay reattaches to the next (then to the offer's hints) and resumes.",
            Required = true,
        };
        var listen = new Option<string>("--listen") { Description = "Address children (sinks, relays) connect to.", Required = true };
        var portFile = new Option<string?>("--port-file") { Description = "Write the bound port here once listening (for --listen HOST:0)." };
        var cache = new Option<string>("--cache") { Description = "Cache directory (a content-addressed store shared across snapshots; resumes after a restart).", Required = true };
        var cacheBytes = new Option<string>("--cache-bytes")
        {
            Description = "Cache bound (e.g. 64G): whole snapshots nobody uses are evicted, least recently used first, to make room; a larger snapshot is refused.",
            DefaultValueFactory = _ => SizeParser.Format(RelayOptions.DefaultCacheBytes),
        };
        var sessions = new Option<int>("--sessions") { Description = "Exit after this many children stored the snapshot (0 = serve until stopped).", DefaultValueFactory = _ => 0 };
        var maxSessions = new Option<int>("--max-sessions") { Description = "Children streamed to at once; more are refused (TooManySessions).", DefaultValueFactory = _ => new RelayOptions { Upstreams = [] }.MaxSessions };
        var reattachTimeout = new Option<double>("--reattach-timeout")
        {
            Description = "Seconds the relay keeps trying its other upstreams after the one it pulls from died (children wait meanwhile); then it ends with one line.",
            DefaultValueFactory = _ => new UpstreamClientOptions().ReattachTimeout.TotalSeconds,
        };
        var inventoryTimeout = TransportTimeouts.Seconds("--inventory-timeout", "Seconds a child may take from the offer to the end of its inventory.", TransportOptions.Default.InventoryTimeout);
        var parallelism = CommonOptions.Parallelism();
        var json = CommonOptions.Json();
        var logLevel = CommonOptions.LogLevel();
        var timeouts = CommonOptions.Timeouts();
        var security = CommonOptions.Security();
        var metrics = MetricsOption.Create();
        var multicast = new MulticastSendOptions();
        var command = new Command("relay", "Pull a snapshot from a source or relay into a bounded cache and forward each batch to children as it arrives (cut-through); answer their demand from the cache or upstream.")
        {
            upstream, listen, portFile, cache, cacheBytes, sessions, maxSessions, reattachTimeout, inventoryTimeout,
            parallelism, json, logLevel, metrics,
        };
        foreach (var option in timeouts.All.Concat(security.All).Concat(multicast.All))
        {
            command.Options.Add(option);
        }
        command.SetAction(async (result, ct) =>
        {
            using var logging = HostServices.CreateLogging(result.GetValue(logLevel));
            var logger = logging.CreateLogger("relay");
            var tls = security.Resolve(result, logger);
            using var exporter = MetricsOption.Start(result, metrics);
            var asJson = result.GetValue(json);
            var bound = SizeParser.Parse(result.GetValue(cacheBytes)!);
            using var store = ChunkStore.Open(result.GetValue(cache)!, logger, new ChunkStoreOptions { MaxCacheBytes = bound, MaxSnapshotBytes = bound });
            var options = new RelayOptions
            {
                Upstreams = result.GetValue(upstream)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                MaxSessions = result.GetValue(maxSessions),
                Tls = tls,
                Multicast = multicast.Resolve(result),
                Pull = new UpstreamClientOptions
                {
                    Upstream = new UpstreamOptions { Parallelism = result.GetValue(parallelism) },
                    ReattachTimeout = TimeSpan.FromSeconds(result.GetValue(reattachTimeout)),
                },
            };
            var transport = timeouts.Apply(result, TransportOptions.Default) with
            {
                InventoryTimeout = TimeSpan.FromSeconds(TransportTimeouts.Positive(result, inventoryTimeout)),
            };
            await using var relay = new RelayNode(store, options, transport, logger);
            var endPoint = relay.Listen(HostServices.ParseEndPoint(result.GetValue(listen)!));
            if (result.GetValue(portFile) is { } path)
            {
                await File.WriteAllTextAsync(path + ".tmp", endPoint.Port.ToString(CultureInfo.InvariantCulture), ct);
                File.Move(path + ".tmp", path, overwrite: true);
            }
            var wanted = result.GetValue(sessions);
            var ended = new List<DownstreamSessionStats>();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            relay.SessionEnded += stats =>
            {
                lock (ended)
                {
                    ended.Add(stats);
                    // Only children that stored the snapshot count: a bogus or failed peer must not end the service for the others.
                    if (wanted > 0 && ended.Count(s => s.Completed) >= wanted)
                    {
                        stop.Cancel();
                    }
                }
            };
            if (!asJson)
            {
                Console.WriteLine($"Relaying from {string.Join(",", options.Upstreams)} on {endPoint}. Ctrl+C stops.");
            }
            string? error = null;
            try
            {
                await relay.RunAsync(stop.Token);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException && !ct.IsCancellationRequested)
            {
                error = ex.Message;
            }
            List<DownstreamSessionStats> children;
            lock (ended)
            {
                children = [.. ended];
            }
            var summary = new
            {
                snapshot = relay.Stream?.Offer.SnapshotId,
                upstream_complete = relay.UpstreamCompleted,
                upstream_sessions = relay.UpstreamSessions,
                batches = relay.Stream?.Count ?? 0,
                children = children.Count,
                children_completed = children.Count(s => s.Completed),
                child_wire_bytes = children.Sum(s => s.WireBytes),
                demand_requests = children.Sum(s => s.DemandRequests),
                cache_bytes = store.CacheBytes,
                error,
            };
            if (asJson)
            {
                Console.WriteLine(JsonSerializer.Serialize(summary, HostServices.Json));
            }
            else
            {
                Console.WriteLine($"relay: snapshot {summary.snapshot ?? "-"}, upstream {(summary.upstream_complete ? "complete" : "incomplete")} after {summary.upstream_sessions} session(s), "
                    + $"{summary.children_completed}/{summary.children} children stored it, {summary.child_wire_bytes} bytes sent to them{(error is null ? "" : $"; {error}")}");
            }
            if (error is not null)
            {
                // The relay logged the cause once (RelayNode: upstream lost); the summary carries it too.
                return 1;
            }
            return children.All(s => s.Completed) ? 0 : 1;
        });
        return command;
    }
}
