using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Spectre.Console;
using StreamClone.Host.Bench;
using StreamClone.Perf;
using StreamClone.Processes;

namespace StreamClone.Host.Commands;

internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Repeatable benchmarks that print figures (JSON with --json).");
        command.Subcommands.Add(CreatePipeline());
        command.Subcommands.Add(CreateSnapshot());
        command.Subcommands.Add(CreateChaos());
        command.Subcommands.Add(CreateFanout());
        return command;
    }

    private static Command CreateChaos()
    {
        var runs = new Option<int>("--runs") { DefaultValueFactory = _ => 30, Description = "Runs, each with one random fault at a random moment." };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1, Description = "Seeds the image and every run's fault: the same seed replays the same faults." };
        var size = new Option<string>("--size") { DefaultValueFactory = _ => "64M", Description = "Size of the memory-like image streamed in every run." };
        var faults = new Option<string[]>("--faults")
        {
            Description = "Fault kinds to draw from (default all): " + string.Join(", ", Enum.GetValues<ChaosFault>().Select(ChaosPlan.Key)) + ".",
            AllowMultipleArgumentsPerToken = true,
        };
        // 120 s: twice the 60 s a peer may stay silent or stop reading before the transport gives up
        // with an error (idle and write-stall timeouts), so a stall that ends in a clear error is never called a hang.
        var hangTimeout = new Option<double>("--hang-timeout") { DefaultValueFactory = _ => 120, Description = "Seconds with no progress (bytes through the proxy, chunks journaled) and no exit before a run counts as a hang." };
        var runTimeout = new Option<double>("--run-timeout") { DefaultValueFactory = _ => 600, Description = "Seconds a run may take at most, progress or not, before it counts as a hang." };
        var restarts = new Option<int>("--restarts") { DefaultValueFactory = _ => 3, Description = "Times the supervisor restarts a failed or killed process per run." };
        var probeReads = new Option<int>("--probe-reads") { DefaultValueFactory = _ => 16, Description = "Demand reads each sink issues beside the bulk stream (traffic on the demand lane)." };
        var verbose = new Option<bool>("--verbose") { Description = "Include every run's details (plan, exits, events, stderr excerpts) in the output." };
        var details = new Option<string?>("--details") { Description = "Write every run's details as JSON to this file." };
        var workDir = new Option<string?>("--work-dir") { Description = "Where images and stores go (default: a temp dir, deleted afterwards)." };
        var json = CommonOptions.Json();
        var security = CommonOptions.Security();
        var command = new Command("chaos", "Source and sink processes through the fault proxy: kills, corrupted/dropped/duplicated/reordered bytes, cut lanes, a full disk, a peer that stops reading; recover, then check the store byte for byte. Prints runs, identical, clear_failures, wrong_bytes, hangs.")
        {
            runs, seed, size, faults, hangTimeout, runTimeout, restarts, probeReads, verbose, details, workDir, json,
        };
        AddSecurity(command, security);
        command.SetAction(async (r, ct) =>
        {
            var kinds = new List<ChaosFault>();
            foreach (var name in (r.GetValue(faults) ?? []).SelectMany(f => f.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
            {
                if (!ChaosPlan.TryParse(name, out var kind))
                {
                    Console.Error.WriteLine($"bench chaos: unknown fault '{name}'");
                    return 2;
                }
                kinds.Add(kind);
            }
            if (kinds.Count == 0)
            {
                kinds.AddRange(Enum.GetValues<ChaosFault>());
            }
            var work = r.GetValue(workDir) ?? Path.Combine(Path.GetTempPath(), $"streamclone-chaos-{Guid.NewGuid():N}");
            var asJson = r.GetValue(json);
            try
            {
                var settings = new ChaosSettings("", work, TimeSpan.FromSeconds(r.GetValue(hangTimeout)), TimeSpan.FromSeconds(r.GetValue(runTimeout)),
                    r.GetValue(restarts), r.GetValue(probeReads))
                { SecurityArguments = ResolveForChildren(security, r) };
                Dictionary<string, object?> report;
                List<ChaosRunResult> results;
                try
                {
                    (report, results) = await ChaosBench.RunAsync(r.GetValue(runs), r.GetValue(seed), SizeParser.Parse(r.GetValue(size)!), kinds, settings,
                    line => Console.Error.WriteLine(line), ct);
                }
                catch (ChaosBenchException ex)
                {
                    Console.Error.WriteLine($"bench chaos: {ex.Message}");
                    return 1;
                }
                if (r.GetValue(details) is { } detailsPath)
                {
                    await File.WriteAllTextAsync(detailsPath, JsonSerializer.Serialize(results, HostServices.Json), ct);
                }
                if (r.GetValue(verbose))
                {
                    report["details"] = results;
                }
                if (asJson)
                {
                    Console.WriteLine(JsonSerializer.Serialize(report, HostServices.Json));
                }
                else
                {
                    WriteTable(report);
                }
                var ok = (int)report["wrong_bytes"]! == 0 && (int)report["hangs"]! == 0
                    && (int)report["identical"]! + (int)report["clear_failures"]! == (int)report["runs"]!;
                return ok ? 0 : 1;
            }
            finally
            {
                if (r.GetValue(workDir) is null && Directory.Exists(work))
                {
                    Directory.Delete(work, recursive: true);
                }
            }
        });
        return command;
    }

    private static Command CreateFanout()
    {
        var sinks = new Option<int>("--sinks") { DefaultValueFactory = _ => 8, Description = "Sinks fed (1–200)." };
        var mode = new Option<FanoutMode>("--mode") { DefaultValueFactory = _ => FanoutMode.Multicast, Description = "multicast: the sinks receive relay B's multicast; tree: they are relay B's TCP children; unicast: the source feeds them itself." };
        var input = new Option<string?>("--input") { Description = "Image to send (default: a 256 MiB memory-like image, generated once under ~/.cache/streamclone/bench)." };
        var loss = new Option<int>("--loss") { DefaultValueFactory = _ => 0, Description = "Percent of the UDP arriving at one multicast receiver dropped (nftables), 0–99." };
        var linkMbit = new Option<int>("--link-mbit") { DefaultValueFactory = _ => 100, Description = "Every host's link rate in Mbit/s (tc tbf both ways): the network, not the two shared cores, is the bottleneck." };
        var probeReads = new Option<int>("--probe-reads") { DefaultValueFactory = _ => 200, Description = "Demand reads the first sink issues while the bulk stream runs (demand_p99_ms)." };
        var baseline = new Option<bool>("--baseline") { Description = "Also run zstd -1 -T2 + uftp (95% of the link) + zstd -d to the same receivers on the same links; report baseline_seconds and speed_vs_baseline." };
        var fixedRate = new Option<bool>("--fixed-rate") { Description = "Multicast at a fixed 95% of the link (--min-rate = --max-rate), as the baseline's uftp -C none; default: the rate follows the receivers' feedback." };
        var timeout = new Option<int>("--timeout") { DefaultValueFactory = _ => 600, Description = "Seconds a run may take before it is stopped and fails." };
        var workDir = new Option<string?>("--work-dir") { Description = "Where run directories (stores, logs, topology files) go (default: a temp dir, deleted afterwards)." };
        var json = CommonOptions.Json();
        var security = CommonOptions.Security();
        var command = new Command("fanout", "Source → relay A → relay B → N sinks (or source → N sinks) in network namespaces on rate-limited links (perf/topology.sh); every copy checked byte for byte. Prints seconds, feeder egress, compressed bytes, NACKs, repairs, CPU use and demand p99.")
        {
            sinks, mode, input, loss, linkMbit, probeReads, baseline, fixedRate, timeout, workDir, json,
        };
        AddSecurity(command, security);
        command.SetAction(async (r, ct) =>
        {
            var count = r.GetValue(sinks);
            var lossPct = r.GetValue(loss);
            var mbit = r.GetValue(linkMbit);
            if (count is < 1 or > 200 || lossPct is < 0 or > 99 || mbit < 1)
            {
                Console.Error.WriteLine("bench fanout: --sinks 1–200, --loss 0–99, --link-mbit ≥ 1");
                return 2;
            }
            if (Environment.UserName != "root")
            {
                Console.Error.WriteLine("bench fanout: needs root (network namespaces)");
                return 1;
            }
            var work = r.GetValue(workDir) ?? Path.Combine(Path.GetTempPath(), $"streamclone-fanout-{Guid.NewGuid():N}");
            Directory.CreateDirectory(work);
            try
            {
                var image = r.GetValue(input) ?? await DefaultFanoutImageAsync(ct);
                if (!File.Exists(image))
                {
                    Console.Error.WriteLine($"bench fanout: {image}: no such file");
                    return 1;
                }
                var settings = new FanoutSettings(count, r.GetValue(mode), Path.GetFullPath(image), lossPct, mbit, r.GetValue(probeReads), TimeSpan.FromSeconds(r.GetValue(timeout)), work)
                { SecurityArguments = ResolveForChildren(security, r), FixedRate = r.GetValue(fixedRate) };
                Dictionary<string, object?> report;
                try
                {
                    report = await FanoutBench.RunAsync(settings, line => Console.Error.WriteLine(line), ct);
                    if (r.GetValue(baseline))
                    {
                        foreach (var (key, value) in await FanoutBaseline.RunAsync(settings, line => Console.Error.WriteLine(line), ct))
                        {
                            report[key] = value;
                        }
                        report["speed_vs_baseline"] = Math.Round((double)report["baseline_seconds"]! / Math.Max((double)report["seconds"]!, 1e-9), 3);
                    }
                }
                catch (Exception ex) when (ex is FanoutBenchException or ProcessFailedException)
                {
                    Console.Error.WriteLine($"bench fanout: {ex.Message}");
                    return 1;
                }
                if (r.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(report, HostServices.Json));
                }
                else
                {
                    WriteTable(report);
                }
                return (int)report["identical_sinks"]! == count && (!report.TryGetValue("baseline_identical", out var b) || (int)b! == count) ? 0 : 1;
            }
            finally
            {
                if (r.GetValue(workDir) is null && Directory.Exists(work))
                {
                    Directory.Delete(work, recursive: true);
                }
            }
        });
        return command;
    }

    /// <summary>The issue's input: 256 MiB of a memory-like image (seed 1), generated once and kept beside run-benchmarks.sh's images.</summary>
    private static async Task<string> DefaultFanoutImageAsync(CancellationToken ct)
    {
        var dir = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "streamclone", "bench");
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, "mem-256m.img");
        const long bytes = 256L << 20;
        if (!File.Exists(path) || new FileInfo(path).Length != bytes)
        {
            Console.Error.WriteLine($"bench fanout: generating {path}");
            await ImageGenerator.GenerateAsync(path + ".tmp", bytes, ImageProfile.Memory, seed: 1, ct);
            File.Move(path + ".tmp", path, overwrite: true);
        }
        return path;
    }

    private static Command CreatePipeline()
    {
        var input = new Option<string>("--input") { Description = "Image to stream (see `image generate`).", Required = true };
        var second = new Option<string?>("--second") { Description = "A changed copy of the image, sent afterwards as a second snapshot to the same sink store." };
        var chunkSize = new Option<int>("--chunk-size") { DefaultValueFactory = _ => 4096, Description = "Bytes per chunk." };
        var batchChunks = new Option<int>("--batch-chunks") { DefaultValueFactory = _ => 64, Description = "Chunks per compressed batch." };
        var level = new Option<int>("--level") { DefaultValueFactory = _ => new StreamClone.Source.SourceOptions().CompressionLevel, Description = "zstd level (negative: fast levels; 0: off)." };
        var parallelism = CommonOptions.Parallelism();
        var probeReads = new Option<int>("--probe-reads") { DefaultValueFactory = _ => 200, Description = "Random demand reads issued while the bulk stream runs." };
        var notSentLowat = new Option<int>("--notsent-lowat") { DefaultValueFactory = _ => StreamClone.Shared.TransportOptions.Default.BulkNotSentLowWatermark, Description = "TCP_NOTSENT_LOWAT of the bulk lane (0 = kernel default)." };
        var baseline = new Option<bool>("--baseline") { Description = "Also run the native pipeline (zstd -T2 | socat | zstd -d) on the same input and print both figures." };
        var sweep = new Option<bool>("--sweep") { Description = "Run a matrix of chunk size × level × parallelism, each with and without TLS; write CSV and a PNG plot to --out." };
        var comparePlain = new Option<bool>("--compare-plain") { Description = "Also run the same transfer over plain TCP (--insecure) right after, and report both speeds (what TLS costs)." };
        var outDir = new Option<string>("--out") { DefaultValueFactory = _ => "bench-results", Description = "Directory for sweep reports." };
        var workDir = new Option<string?>("--work-dir") { Description = "Where sink stores go (default: a temp dir, deleted afterwards)." };
        var json = CommonOptions.Json();
        var security = CommonOptions.Security();
        var command = new Command("pipeline", "Stream an image source → sink as separate processes over loopback; verify the copy; print throughput, ratio, demand latency and peak memory.")
        {
            input, second, chunkSize, batchChunks, level, parallelism, probeReads, notSentLowat, baseline, sweep, comparePlain, outDir, workDir, json,
        };
        AddSecurity(command, security);
        command.SetAction(async (r, ct) =>
        {
            var work = r.GetValue(workDir) ?? Path.Combine(Path.GetTempPath(), $"streamclone-bench-{Guid.NewGuid():N}");
            try
            {
                var settings = new PipelineSettings(r.GetValue(chunkSize), r.GetValue(batchChunks), r.GetValue(level), r.GetValue(parallelism), r.GetValue(probeReads), r.GetValue(notSentLowat))
                { SecurityArguments = ResolveForChildren(security, r) };
                if (r.GetValue(sweep))
                {
                    return await SweepAsync(r.GetValue(input)!, work, settings, r.GetValue(outDir)!, ct);
                }
                var report = await RunOnceAsync(r.GetValue(input)!, r.GetValue(second), work, settings, r.GetValue(baseline), r.GetValue(comparePlain), ct);
                if (r.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(report, HostServices.Json));
                }
                else
                {
                    WriteTable(report);
                }
                return report["identical"] is true && (!report.TryGetValue("second_identical", out var s2) || s2 is true)
                    && (!report.TryGetValue("plain_identical", out var p2) || p2 is true) ? 0 : 1;
            }
            finally
            {
                if (r.GetValue(workDir) is null && Directory.Exists(work))
                {
                    Directory.Delete(work, recursive: true);
                }
            }
        });
        return command;
    }

    private static Command CreateSnapshot()
    {
        var memory = new Option<string>("--memory") { Description = "Guest RAM (256M, 1G, …).", DefaultValueFactory = _ => "256M" };
        var fill = new Option<int?>("--fill") { Description = "MiB of guest RAM the workload fills with non-zero data (default: all but max(96 MiB, a quarter))." };
        var accel = new Option<StreamClone.Qemu.VmAccel>("--accel") { Description = "kvm, tcg or auto (KVM is detected as unusable within seconds).", DefaultValueFactory = _ => StreamClone.Qemu.VmAccel.Tcg };
        var json = CommonOptions.Json();
        var logLevel = CommonOptions.LogLevel();
        var security = CommonOptions.Security();
        var command = new Command("snapshot", "Boot the test guest, snapshot it live through source → sink processes, restore a clone; print pause, guest gap, snapshot and restore times.")
        {
            memory, fill, accel, json, logLevel,
        };
        AddSecurity(command, security);
        command.SetAction(async (r, ct) =>
        {
            using var logging = HostServices.CreateLogging(r.GetValue(logLevel));
            var work = Path.Combine(Path.GetTempPath(), $"streamclone-bench-snapshot-{Guid.NewGuid():N}");
            Directory.CreateDirectory(work);
            try
            {
                var mem = r.GetValue(memory)!;
                // Leave the kernel, initramfs and page tables max(96 MiB, a quarter): more and the guest kernel panics out of memory.
                var memMiB = (int)(SizeParser.Parse(mem) >> 20);
                var fillMiB = r.GetValue(fill) ?? Math.Max(16, memMiB - Math.Max(96, memMiB / 4));
                var report = await SnapshotBench.RunAsync(mem, fillMiB, r.GetValue(accel), work, ResolveForChildren(security, r), logging.CreateLogger("bench"), ct);
                if (r.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(report, HostServices.Json));
                }
                else
                {
                    WriteTable(report);
                }
                return report["clone_continues"] is true ? 0 : 1;
            }
            finally
            {
                Directory.Delete(work, recursive: true);
            }
        });
        return command;
    }

    private static void AddSecurity(Command command, TransportSecurityOptions security)
    {
        foreach (var option in security.All)
        {
            command.Options.Add(option);
        }
    }

    /// <summary>
    /// The source and sink processes' security arguments, the PKI opened here first: a bad --pki is one
    /// line before anything starts, and a first run creates the default PKI once, not in two racing children.
    /// </summary>
    private static IReadOnlyList<string> ResolveForChildren(TransportSecurityOptions security, ParseResult r)
    {
        using var logging = HostServices.CreateLogging(Microsoft.Extensions.Logging.LogLevel.Warning);
        security.Resolve(r, logging.CreateLogger("bench"));
        return security.ChildArguments(r);
    }

    private static void WriteTable(Dictionary<string, object?> report)
    {
        var table = new Table().AddColumns("figure", "value");
        foreach (var (key, value) in report)
        {
            table.AddRow(key, Convert.ToString(value, CultureInfo.InvariantCulture) ?? "");
        }
        AnsiConsole.Write(table);
    }

    private static async Task<Dictionary<string, object?>> RunOnceAsync(string input, string? second, string work, PipelineSettings settings, bool baseline, bool comparePlain, CancellationToken ct)
    {
        var store = Path.Combine(work, "store");
        var first = await PipelineBench.TransferAsync(input, store, work, settings, ct);
        var report = new Dictionary<string, object?>
        {
            ["bytes"] = first.Bytes,
            ["wire_bytes"] = first.WireBytes,
            ["wire_ratio"] = Math.Round((double)first.WireBytes / Math.Max(1, first.Bytes), 4),
            ["seconds"] = first.Seconds,
            ["mbps"] = first.Mbps,
            ["identical"] = first.Identical,
            ["tls"] = settings.Tls,
            ["demand_reads"] = first.DemandReads,
            ["demand_p50_ms"] = first.DemandP50Ms,
            ["demand_p99_ms"] = first.DemandP99Ms,
            ["source_peak_rss_mb"] = first.SourcePeakRssMb,
            ["sink_peak_rss_mb"] = first.SinkPeakRssMb,
            ["chunk_size"] = settings.ChunkSize,
            ["batch_chunks"] = settings.BatchChunks,
            ["level"] = settings.Level,
            ["parallelism"] = settings.Parallelism,
        };
        if (second is not null)
        {
            var next = await PipelineBench.TransferAsync(second, store, work, settings with { ProbeReads = 0 }, ct);
            report["second_wire_bytes"] = next.WireBytes;
            report["second_wire_vs_first"] = Math.Round((double)next.WireBytes / Math.Max(1, first.WireBytes), 4);
            report["second_seconds"] = next.Seconds;
            report["second_identical"] = next.Identical;
        }
        if (comparePlain && settings.Tls)
        {
            // Same input and settings into a fresh store, right after: the speed difference is TLS.
            var plainStore = Path.Combine(work, "store-plain");
            var plain = await PipelineBench.TransferAsync(input, plainStore, work, settings.Plain(), ct);
            Directory.Delete(plainStore, recursive: true);
            report["plain_mbps"] = plain.Mbps;
            report["plain_seconds"] = plain.Seconds;
            report["plain_identical"] = plain.Identical;
            report["tls_vs_plain"] = Math.Round(first.Mbps / Math.Max(plain.Mbps, 1e-9), 3);
        }
        if (baseline)
        {
            // Same input, same zstd level, both processes on this machine's two cores.
            var native = await NativeZstdBaseline.RunAsync(input, settings.Level == 0 ? 1 : settings.Level, threads: 2, workDirectory: work, ct: ct);
            report["native_seconds"] = Math.Round(native.Seconds, 3);
            report["native_mbps"] = Math.Round(native.MegabytesPerSecond, 1);
            report["native_wire_bytes"] = native.WireBytes;
            report["native_identical"] = native.Identical;
            report["speed_vs_native"] = Math.Round(first.Mbps / Math.Max(native.MegabytesPerSecond, 1e-9), 3);
        }
        return report;
    }

    private static async Task<int> SweepAsync(string input, string work, PipelineSettings baseSettings, string outDir, CancellationToken ct)
    {
        Directory.CreateDirectory(outDir);
        var rows = new List<(string Label, PipelineSettings Settings, TransferResult Result)>();
        int[] chunkSizes = [4096, 16384, 65536];
        int[] levels = [-1, 1];
        int[] parallelisms = [1, 2];
        // With and without TLS for each setting (without only, when the caller asked for --insecure).
        PipelineSettings[] securities = baseSettings.Tls ? [baseSettings, baseSettings.Plain()] : [baseSettings];
        foreach (var chunk in chunkSizes)
        {
            foreach (var level in levels)
            {
                foreach (var par in parallelisms)
                {
                    foreach (var security in securities)
                    {
                        // Batches stay near 256 KiB whatever the chunk size, so only identity granularity changes.
                        var settings = security with { ChunkSize = chunk, Level = level, Parallelism = par, BatchChunks = Math.Max(1, (256 << 10) / chunk), ProbeReads = 0 };
                        var store = Path.Combine(work, $"store-{chunk}-{level}-{par}-{(settings.Tls ? "tls" : "plain")}");
                        var result = await PipelineBench.TransferAsync(input, store, work, settings, ct);
                        Directory.Delete(store, recursive: true);
                        var label = $"{chunk / 1024}K L{level} P{par} {(settings.Tls ? "TLS" : "plain")}";
                        rows.Add((label, settings, result));
                        AnsiConsole.MarkupLine($"{label}: {result.Mbps:F0} MB/s, wire {100.0 * result.WireBytes / result.Bytes:F1}%, identical {result.Identical}");
                    }
                }
            }
        }
        var csv = new StringBuilder("chunk_size,batch_chunks,level,parallelism,tls,mbps,wire_ratio,seconds,identical,source_peak_rss_mb,sink_peak_rss_mb\n");
        foreach (var (_, s, r) in rows)
        {
            csv.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{s.ChunkSize},{s.BatchChunks},{s.Level},{s.Parallelism},{s.Tls},{r.Mbps},{(double)r.WireBytes / r.Bytes:F4},{r.Seconds},{r.Identical},{r.SourcePeakRssMb},{r.SinkPeakRssMb}"));
        }
        var csvPath = Path.Combine(outDir, "pipeline-sweep.csv");
        await File.WriteAllTextAsync(csvPath, csv.ToString(), ct);
        var pngPath = Path.Combine(outDir, "pipeline-sweep.png");
        SweepPlot.Write(pngPath, [.. rows.Select(r => (r.Label, r.Result.Mbps, 100.0 * r.Result.WireBytes / r.Result.Bytes))]);
        Console.WriteLine($"wrote {csvPath} and {pngPath}");
        return rows.All(r => r.Result.Identical) ? 0 : 1;
    }
}
