using System.CommandLine;
using System.Globalization;
using System.Net;
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
        var multicast = new Option<string?>("--multicast") { Description = "Also send the snapshot to this UDP multicast group (GROUP:PORT) on --interface." };
        var iface = new Option<string?>("--interface") { Description = "With --multicast: the network interface of the multicast segment." };
        var minRate = new Option<string>("--min-rate") { Description = "With --multicast: lowest send rate in bytes per second (e.g. 1M).", DefaultValueFactory = _ => "1M" };
        var maxRate = new Option<string>("--max-rate") { Description = "With --multicast: highest send rate in bytes per second (e.g. 12M for 100 Mbit/s).", DefaultValueFactory = _ => "125M" };
        var inventoryTimeout = TransportTimeouts.Seconds("--inventory-timeout", "Seconds a child may take from the offer to the end of its inventory.", TransportOptions.Default.InventoryTimeout);
        var parallelism = CommonOptions.Parallelism();
        var json = CommonOptions.Json();
        var logLevel = CommonOptions.LogLevel();
        var timeouts = CommonOptions.Timeouts();
        var security = CommonOptions.Security();
        var metrics = MetricsOption.Create();
        var command = new Command("relay", "Pull a snapshot from a source or relay into a bounded cache and forward each batch to children as it arrives (cut-through); answer their demand from the cache or upstream.")
        {
            upstream, listen, portFile, cache, cacheBytes, sessions, maxSessions, reattachTimeout, multicast, iface, minRate, maxRate, inventoryTimeout,
            parallelism, json, logLevel, metrics,
        };
        foreach (var option in timeouts.All.Concat(security.All))
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
            var multicastGroup = ParseMulticast(result.GetValue(multicast), result.GetValue(iface));
            var bound = SizeParser.Parse(result.GetValue(cacheBytes)!);
            using var store = ChunkStore.Open(result.GetValue(cache)!, logger, new ChunkStoreOptions { MaxCacheBytes = bound, MaxSnapshotBytes = bound });
            var options = new RelayOptions
            {
                Upstreams = result.GetValue(upstream)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                MaxSessions = result.GetValue(maxSessions),
                Tls = tls,
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
            if (multicastGroup is { } group)
            {
                var minimum = SizeParser.Parse(result.GetValue(minRate)!);
                var maximum = SizeParser.Parse(result.GetValue(maxRate)!);
                logger.LogWarningMulticastPending(group.Group, group.Port, group.Interface, minimum, maximum);
                // MERGE (lead): enable once Shared/Fanout/MulticastFanout.cs is on main:
                // _ = relay.StreamReady.ContinueWith(t => MulticastFanout.Attach(relay.Downstream, t.Result, new MulticastFanoutOptions { Group = group.Group, Port = group.Port, Interface = group.Interface, MinRateBytesPerSecond = minimum, MaxRateBytesPerSecond = maximum }, logger), TaskScheduler.Default);
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

    private static (IPAddress Group, int Port, string Interface)? ParseMulticast(string? spec, string? iface)
    {
        if (spec is null)
        {
            return null;
        }
        var colon = spec.LastIndexOf(':');
        if (colon <= 0 || !IPAddress.TryParse(spec[..colon], out var group) || !int.TryParse(spec.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port)
            || port is 0 or > 65535 || !IsMulticast(group))
        {
            throw new FormatException($"--multicast '{spec}' is not GROUP:PORT with a multicast group address");
        }
        if (string.IsNullOrWhiteSpace(iface))
        {
            throw new FormatException("--multicast needs --interface IF (the segment's interface)");
        }
        return (group, port, iface);
    }

    private static bool IsMulticast(IPAddress address) => address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
        ? (address.GetAddressBytes()[0] & 0xF0) == 0xE0
        : address.IsIPv6Multicast;
}

internal static partial class RelayCommandLog
{
    [Microsoft.Extensions.Logging.LoggerMessage(2050, Microsoft.Extensions.Logging.LogLevel.Warning, "Multicast to {Group}:{Port} on {Interface} ({Min}..{Max} B/s) is parsed but not sent by this build: TCP children only")]
    public static partial void LogWarningMulticastPending(this Microsoft.Extensions.Logging.ILogger logger, IPAddress group, int port, string @interface, long min, long max);
}
