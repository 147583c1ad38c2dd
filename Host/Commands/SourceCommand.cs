using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Model;
using StreamClone.Shared.Qemu;
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
        var snapshotId = new Option<string?>("--snapshot-id") { Description = "Snapshot id (default: new). A sink resumes a snapshot with the same id." };
        var notSentLowat = new Option<int>("--notsent-lowat") { Description = "TCP_NOTSENT_LOWAT of the bulk lane in bytes (0 = kernel default).", DefaultValueFactory = _ => TransportOptions.Default.BulkNotSentLowWatermark };
        var parallelism = CommonOptions.Parallelism();
        var json = CommonOptions.Json();
        var logLevel = CommonOptions.LogLevel();
        var metrics = MetricsOption.Create();

        var command = new Command("source", "Offer image files as a snapshot to sinks and relays: chunk, hash, drop zeros, dedup, compress, stream; answer demand requests first.")
        {
            images, qmpSocket, workDir, listen, portFile, chunkSize, batchChunks, level, sessions, maxSessions, snapshotId, notSentLowat, parallelism, json, logLevel, inventoryTimeout,
            metrics,
        };
        foreach (var option in timeouts.All)
        {
            command.Options.Add(option);
        }
        command.SetAction(async (result, ct) =>
        {
            using var logging = HostServices.CreateLogging(result.GetValue(logLevel));
            var logger = logging.CreateLogger("source");
            using var exporter = MetricsOption.Start(result, metrics);
            var options = new SourceOptions
            {
                ChunkSize = result.GetValue(chunkSize),
                BatchChunks = result.GetValue(batchChunks),
                CompressionLevel = result.GetValue(level),
                Parallelism = result.GetValue(parallelism),
                MaxSessions = result.GetValue(maxSessions),
            };
            var transport = timeouts.Apply(result, TransportOptions.Default) with
            {
                BulkNotSentLowWatermark = result.GetValue(notSentLowat),
                InventoryTimeout = TimeSpan.FromSeconds(TransportTimeouts.Positive(result, inventoryTimeout)),
            };
            var id = result.GetValue(snapshotId) ?? Guid.NewGuid().ToString("N");
            if (result.GetValue(qmpSocket) is { } socketPath && !File.Exists(socketPath))
            {
                // connect(2) says "Cannot assign requested address" for a missing path: name the real problem.
                throw new FileNotFoundException($"QMP socket {socketPath} does not exist (start QEMU with -qmp unix:{socketPath},server=on,wait=off)", socketPath);
            }
            using var liveDir = result.GetValue(qmpSocket) is null ? null
                : result.GetValue(workDir) is { } given ? LiveWorkDirectory.Claim(given) : LiveWorkDirectory.CreateDefault();
            await using var qmp = result.GetValue(qmpSocket) is { } qmpPath ? await QmpClient.ConnectAsync(qmpPath, null, logger, ct) : null;
            await using var live = qmp is null ? null
                : await LiveVmSnapshot.StartAsync(qmp, liveDir!.Path, options.ChunkSize, id, logger, ct);
            var imageSpecs = result.GetValue(images) ?? [];
            if (live is null && imageSpecs.Length == 0)
            {
                Console.Error.WriteLine("source: give --image FILE (one or more) or --qmp SOCKET");
                return 2;
            }
            await using var files = live is null ? ImageFileInput.Open([.. imageSpecs.Select(ParseImage)], options.ChunkSize, id) : null;
            ISnapshotInput input = live is null ? files! : live.Input;
            if (live is not null)
            {
                try
                {
                    await live.Input.OfferReady.WaitAsync(TimeSpan.FromSeconds(60), ct);
                }
                catch (LiveSnapshotException)
                {
                    // The snapshot's own error names the VM and what QEMU said (and comes once the VM is recovered).
                    await live.Completion;
                    throw;
                }
            }
            await using var server = new SourceServer(input, options, transport, logger);
            var bound = server.Listen(HostServices.ParseEndPoint(result.GetValue(listen)!));
            if (result.GetValue(portFile) is { } path)
            {
                await File.WriteAllTextAsync(path + ".tmp", bound.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), ct);
                File.Move(path + ".tmp", path, overwrite: true);
            }

            var wanted = result.GetValue(sessions);
            var ended = new List<SourceSessionStats>();
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
            var run = server.RunAsync(stop.Token);
            // A live snapshot that fails (VM died, stream cut short, disk full) ends the source: its sessions
            // already failed with the error, and no later sink may be served a snapshot that cannot complete.
            var watch = live is null ? Task.CompletedTask : StopWhenFailedAsync(live, server, stop);
            if (HostServices.Interactive(asJson))
            {
                await ProgressView.ShowSourceAsync(server, input.Offer.Objects.Sum(o => o.Size), run);
            }
            await run;
            if (live is not null)
            {
                // Rethrows the snapshot's failure (one clear line, exit 1) even when every session ended well.
                await watch;
                await live.Completion;
            }

            var summaries = ended.Select(s => new
            {
                session = s.SessionId,
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

    private static async Task StopWhenFailedAsync(LiveVmSnapshot live, SourceServer server, CancellationTokenSource stop)
    {
        try
        {
            await live.Completion;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Running sessions hit the failed input at once and tell their sinks why; give them that moment
            // (bounded) before the server stops them without a word.
            var grace = Stopwatch.StartNew();
            while (server.ActiveSessions.Any() && grace.Elapsed < TimeSpan.FromSeconds(3))
            {
                await Task.Delay(20, CancellationToken.None);
            }
            await stop.CancelAsync();
        }
    }

    private static async Task<object?> LiveSummaryAsync(LiveVmSnapshot? live)
    {
        if (live is null)
        {
            return null;
        }
        var info = await live.Completion;
        var objects = live.Input.Offer.Objects;
        return new
        {
            downtime_ms = info.DowntimeMs,
            stop_to_restart_ms = Math.Round(live.GuestPause.TotalMilliseconds, 2),
            migration_ms = info.TotalTimeMs,
            memory_bytes = objects.Where(o => o.Kind == ObjectKind.Memory).Sum(o => o.Size),
            disk_bytes = objects.Where(o => o.Kind == ObjectKind.Disk).Sum(o => o.Size),
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
