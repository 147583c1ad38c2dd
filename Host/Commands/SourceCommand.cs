using System.CommandLine;
using System.Text.Json;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Live;
using StreamClone.Source.Server;

namespace StreamClone.Host.Commands;

internal static class SourceCommand
{
    public static Command Create()
    {
        var images = new Option<string[]>("--image")
        {
            Description = "Image file to offer; repeat for several objects. Suffix :memory, :disk or :device sets the kind (default memory).",
            AllowMultipleArgumentsPerToken = true,
        };
        var qmpSocket = new Option<string?>("--qmp") { Description = "Snapshot the running VM behind this QMP socket (disks and memory, copy-on-write) and offer that instead of images." };
        var workDir = new Option<string?>("--work-dir") { Description = "With --qmp: where the RAM pages, the disks' scratch images and QEMU's sockets go; must be ours and not group/world-writable (default: a new private temp dir)." };
        var listen = new Option<string>("--listen") { Description = "Address to listen on.", DefaultValueFactory = _ => "127.0.0.1:7070" };
        var portFile = new Option<string?>("--port-file") { Description = "Write the bound port here once listening (for --listen HOST:0)." };
        var chunkSize = new Option<int>("--chunk-size") { Description = "Bytes per chunk (multiple of 4096): the unit of hashing, dedup and demand.", DefaultValueFactory = _ => 4096 };
        var batchChunks = new Option<int>("--batch-chunks") { Description = "Chunks per batch: the unit of compression and framing.", DefaultValueFactory = _ => 64 };
        var level = new Option<int>("--level") { Description = "zstd level (negative: fast levels; 0: no compression).", DefaultValueFactory = _ => new SourceOptions().CompressionLevel };
        var sessions = new Option<int>("--sessions") { Description = "Exit after this many sinks stored the snapshot (failed sessions and refused connections do not count; 0 = serve until Ctrl+C).", DefaultValueFactory = _ => 0 };
        var maxSessions = new Option<int>("--max-sessions") { Description = "Sinks streamed to at once; more are refused (TooManySessions).", DefaultValueFactory = _ => new SourceOptions().MaxSessions };
        var inventoryTimeout = TransportTimeouts.Seconds("--inventory-timeout", "Seconds a sink may take from the offer to the end of its inventory.", TransportOptions.Default.InventoryTimeout);
        var timeouts = CommonOptions.Timeouts();
        var security = CommonOptions.Security();
        var snapshotId = SnapshotIdOption.Create("--snapshot-id", "Snapshot id (default: new). A sink resumes a snapshot with the same id.");
        var notSentLowat = new Option<int>("--notsent-lowat") { Description = "TCP_NOTSENT_LOWAT of the bulk lane in bytes (0 = kernel default).", DefaultValueFactory = _ => TransportOptions.Default.BulkNotSentLowWatermark };
        var parallelism = CommonOptions.Parallelism();
        var json = CommonOptions.Json();
        var logLevel = CommonOptions.LogLevel();
        var metrics = MetricsOption.Create();
        var multicast = new MulticastSendOptions();

        var command = new Command("source", "Offer image files as a snapshot to sinks and relays: chunk, hash, drop zeros, dedup, compress, stream; answer demand requests first.")
        {
            images, qmpSocket, workDir, listen, portFile, chunkSize, batchChunks, level, sessions, maxSessions, snapshotId, notSentLowat, parallelism, json, logLevel, inventoryTimeout,
            metrics,
        };
        foreach (var option in timeouts.All.Concat(security.All).Concat(multicast.All))
        {
            command.Options.Add(option);
        }
        command.SetAction(async (result, ct) =>
        {
            using var logging = HostServices.CreateLogging(result.GetValue(logLevel));
            var logger = logging.CreateLogger("source");
            // What every connection this source accepts is secured with (null: plain TCP, --insecure).
            var tls = security.Resolve(result, logger);
            using var exporter = MetricsOption.Start(result, metrics);
            var options = new SourceOptions
            {
                ChunkSize = result.GetValue(chunkSize),
                BatchChunks = result.GetValue(batchChunks),
                CompressionLevel = result.GetValue(level),
                Parallelism = result.GetValue(parallelism),
                MaxSessions = result.GetValue(maxSessions),
                Tls = tls,
            };
            var transport = timeouts.Apply(result, TransportOptions.Default) with
            {
                BulkNotSentLowWatermark = result.GetValue(notSentLowat),
                InventoryTimeout = TimeSpan.FromSeconds(TransportTimeouts.Positive(result, inventoryTimeout)),
            };
            var id = result.GetValue(snapshotId) ?? Guid.NewGuid().ToString("N");
            // A live source's lifecycle (work dir, snapshot, failure, exit) is LiveSource's; this only binds options.
            await using var live = result.GetValue(qmpSocket) is { } qmpPath
                ? await LiveSource.StartAsync(new LiveSourceSettings { QmpSocketPath = qmpPath, WorkDirectory = result.GetValue(workDir), ChunkSize = options.ChunkSize, SnapshotId = id }, logger, ct)
                : null;
            var imageSpecs = result.GetValue(images) ?? [];
            if (live is null && imageSpecs.Length == 0)
            {
                Console.Error.WriteLine("source: give --image FILE (one or more) or --qmp SOCKET");
                return 2;
            }
            await using var files = live is null ? ImageFileInput.Open([.. imageSpecs.Select(ParseImage)], options.ChunkSize, id) : null;
            ISnapshotInput input = live is null ? files! : live.Input;
            await using var server = new SourceServer(input, options, transport, logger);
            var bound = server.Listen(HostServices.ParseEndPoint(result.GetValue(listen)!));
            await using var fanout = multicast.Resolve(result) is { } multicastOptions
                ? MulticastFanout.Attach(server.Downstream, server.Stream, multicastOptions, logger)
                : null;
            if (result.GetValue(portFile) is { } path)
            {
                await File.WriteAllTextAsync(path + ".tmp", bound.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), ct);
                File.Move(path + ".tmp", path, overwrite: true);
            }

            var wanted = result.GetValue(sessions);
            var ended = new List<DownstreamSessionStats>();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            server.SessionEnded += stats =>
            {
                lock (ended)
                {
                    ended.Add(stats);
                    // Only sessions that stored the snapshot count: a bogus or failed peer must not end the service for the real sinks.
                    if (wanted > 0 && ended.Count(s => s.Completed) >= wanted)
                    {
                        stop.Cancel();
                    }
                }
            };
            var asJson = result.GetValue(json);
            if (!asJson)
            {
                Console.WriteLine($"Offering snapshot {input.Offer.SnapshotId} on {bound} ({input.Offer.Objects.Count} objects). Ctrl+C stops.");
            }
            // A live snapshot that fails ends the serving with its error (LiveSource.ServeAsync says when).
            var run = live is null ? server.RunAsync(stop.Token) : live.ServeAsync(server, stop);
            if (HostServices.Interactive(asJson))
            {
                await ProgressView.ShowSourceAsync(server, input.Offer.Objects.Sum(o => o.Size), run);
            }
            await run;

            var summaries = ended.Select(s => new
            {
                session = s.SessionId,
                peer = s.Peer,
                completed = s.Completed,
                error = s.Error,
                bytes = s.InputBytes,
                wire_bytes = s.WireBytes,
                seconds = Math.Round(s.Seconds, 3),
                mbps = Math.Round(s.InputBytes / 1e6 / Math.Max(s.Seconds, 1e-9), 1),
                zero_chunks = s.ZeroChunks,
                known_chunks = s.KnownChunks,
                chunks = s.Chunks,
                demand_requests = s.DemandRequests,
            }).ToList();
            if (asJson)
            {
                Console.WriteLine(JsonSerializer.Serialize(new { snapshot = input.Offer.SnapshotId, sessions = summaries, live = await LiveSummaryAsync(live), peak_rss_mb = ProcessStats.PeakRssMiB(), gc_pause_ms = ProcessStats.GcPauseMs(), gen2_collections = ProcessStats.Gen2Collections() }, HostServices.Json));
            }
            else
            {
                SummaryView.SourceTable(ended);
            }
            return ended.All(s => s.Completed) ? 0 : 1;
        });
        return command;
    }

    private static async Task<object?> LiveSummaryAsync(LiveSource? live)
    {
        if (live is null)
        {
            return null;
        }
        var summary = await live.SummaryAsync();
        return new
        {
            downtime_ms = summary.DowntimeMs,
            stop_to_restart_ms = summary.StopToRestartMs,
            migration_ms = summary.MigrationMs,
            memory_bytes = summary.MemoryBytes,
            disk_bytes = summary.DiskBytes,
        };
    }

    private static (string, ObjectKind) ParseImage(string spec)
    {
        var colon = spec.LastIndexOf(':');
        if (colon > 0)
        {
            var kind = spec[(colon + 1)..].ToLowerInvariant() switch
            {
                "memory" => ObjectKind.Memory,
                "disk" => ObjectKind.Disk,
                "device" => ObjectKind.DeviceState,
                _ => (ObjectKind)0,
            };
            if (kind != 0)
            {
                return (spec[..colon], kind);
            }
        }
        return (spec, ObjectKind.Memory);
    }
}
