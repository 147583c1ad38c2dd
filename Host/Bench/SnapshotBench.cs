using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using StreamClone.Clone;
using StreamClone.Processes;
using StreamClone.Qemu;
using StreamClone.Store;
using StreamClone.TestGuest;

namespace StreamClone.Host.Bench;

/// <summary>
/// Live snapshot of the test guest, end to end: the guest counts (and fills most of its memory),
/// a `source --qmp` process snapshots it and streams to a `sink` process over loopback, then a clone
/// is restored from the sink's store. Prints QEMU's pause, the largest gap in the guest's own ticks,
/// how long the snapshot took to stream, and whether the clone continued from the snapshot.
/// </summary>
internal static partial class SnapshotBench
{
    // "SC tick=12 mem=… disk=… chk=ok sweep=3 t=4567" (tests/StreamClone.TestGuest/guest/workload.c); t is guest monotonic ms.
    [GeneratedRegex(@"^SC tick=(\d+) mem=([0-9a-f]{8}) disk=([0-9a-f]{8}) chk=(ok|BAD) sweep=\d+ t=(\d+)$")]
    private static partial Regex TickLine();

    private sealed record Tick(long N, string Mem, string Disk, bool Ok, long TimeMs);

    private static Tick? Parse(string line)
    {
        var m = TickLine().Match(line);
        return m.Success
            ? new Tick(long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m.Groups[2].Value, m.Groups[3].Value, m.Groups[4].Value == "ok",
                long.Parse(m.Groups[5].Value, CultureInfo.InvariantCulture))
            : null;
    }

    public static async Task<Dictionary<string, object?>> RunAsync(string memory, int fillMiB, VmAccel accel, string work, IReadOnlyList<string> securityArguments, ILogger logger, CancellationToken ct)
    {
        var guest = await GuestBuilder.BuildAsync(null, logger, ct);
        var sourceQmp = Path.Combine(work, "source-qmp.sock");
        var vmOptions = new VmOptions { Guest = guest, Memory = memory, FillMiB = fillMiB, Accel = accel, WorkDir = Path.Combine(work, "vm") };
        // A second monitor for the source process: the launcher keeps the first (QMP serves one client at a time).
        await using var vm = await VmLauncher.StartAsync(vmOptions with { ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"] }, logger, ct);
        await vm.WaitForConsoleAsync(l => Parse(l) is { N: >= 10 }, TimeSpan.FromMinutes(3), 0, ct);
        var linesBefore = vm.ConsoleLineCount;

        var clock = Stopwatch.StartNew();
        var portFile = Path.Combine(work, "port");
        await using var source = RunningProcess.Start(ProcessCommand.ThisProgram("source", ["source", "--qmp", sourceQmp, "--work-dir", Path.Combine(work, "live"), "--listen", "127.0.0.1:0", "--port-file", portFile, "--sessions", "1", "--json", .. securityArguments]));
        var port = await PortFile.WaitAsync(portFile, source, TimeSpan.FromSeconds(60), ct);
        var store = Path.Combine(work, "store");
        await using var sink = RunningProcess.Start(ProcessCommand.ThisProgram("sink", ["sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json", .. securityArguments]));
        if (await sink.WaitAsync(TimeSpan.FromMinutes(20), ct) != 0 | await source.WaitAsync(TimeSpan.FromMinutes(1), ct) != 0)
        {
            throw new InvalidOperationException($"snapshot transfer failed.\nsink: {sink.Stderr}\nsource: {source.Stderr}");
        }
        var snapshotSeconds = clock.Elapsed.TotalSeconds;
        using var sourceJson = JsonDocument.Parse(source.LastLine);
        using var sinkJson = JsonDocument.Parse(sink.LastLine);
        var live = sourceJson.RootElement.GetProperty("live");

        // The source VM goes on: a few more ticks, then the largest interval between consecutive ticks
        // from just before the snapshot on (nominal 100 ms).
        var lastBefore = vm.GetConsoleLines().Take((int)linesBefore).Select(Parse).Last(t => t is not null)!;
        await vm.WaitForConsoleAsync(l => Parse(l) is { } t && t.N >= lastBefore.N + 10, TimeSpan.FromMinutes(2), linesBefore, ct);
        var sourceTicks = vm.GetConsoleLines().Select(Parse).OfType<Tick>().Where(t => t.N >= lastBefore.N).ToList();
        var maxInterval = sourceTicks.Zip(sourceTicks.Skip(1)).Max(p => p.Second.TimeMs - p.First.TimeMs);
        var consecutive = sourceTicks.Zip(sourceTicks.Skip(1)).All(p => p.Second.N == p.First.N + 1);

        using var chunkStore = ChunkStore.Open(store, logger);
        var id = sinkJson.RootElement.GetProperty("snapshot_id").GetString()!;
        var restoreClock = Stopwatch.StartNew();
        await using var clone = await CloneRestorer.RestoreAsync(chunkStore.GetSnapshot(id)!, vmOptions, Path.Combine(work, "clone"), logger, ct);
        var firstLine = await clone.Vm.WaitForConsoleAsync(l => Parse(l) is not null, TimeSpan.FromMinutes(2), 0, ct);
        var restoreToFirstTick = restoreClock.Elapsed.TotalSeconds;
        var first = Parse(firstLine)!;
        var allSource = vm.GetConsoleLines().Select(Parse).OfType<Tick>().ToDictionary(t => t.N);
        var continues = first.Ok && allSource.TryGetValue(first.N, out var twin) && twin.Mem == first.Mem && twin.Disk == first.Disk && first.N > lastBefore.N;

        return new Dictionary<string, object?>
        {
            ["memory"] = memory,
            ["fill_mib"] = fillMiB,
            ["pause_ms"] = live.GetProperty("downtime_ms").ValueKind == JsonValueKind.Number ? live.GetProperty("downtime_ms").GetInt64() : null,
            ["stop_to_restart_ms"] = live.GetProperty("stop_to_restart_ms").GetDouble(),
            ["guest_gap_ms"] = maxInterval - 100,
            ["guest_max_tick_interval_ms"] = maxInterval,
            ["source_ticks_consecutive"] = consecutive,
            ["snapshot_seconds"] = Math.Round(snapshotSeconds, 3),
            ["migration_ms"] = live.TryGetProperty("migration_ms", out var m) && m.ValueKind == JsonValueKind.Number ? m.GetInt64() : null,
            ["memory_bytes"] = live.GetProperty("memory_bytes").GetInt64(),
            ["disk_bytes"] = live.GetProperty("disk_bytes").GetInt64(),
            ["wire_bytes"] = sinkJson.RootElement.GetProperty("wire_bytes").GetInt64(),
            ["restore_seconds"] = Math.Round(clone.RestoreTime.TotalSeconds, 3),
            ["restore_to_first_tick_seconds"] = Math.Round(restoreToFirstTick, 3),
            ["clone_first_tick"] = first.N,
            ["clone_continues"] = continues,
        };
    }
}
