using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using StreamClone.Clone;
using StreamClone.Host.Bench;
using StreamClone.Qemu;
using StreamClone.Store;
using StreamClone.TestGuest;

namespace StreamClone.Host.Commands;

/// <summary>
/// The README's main job: boot the test guest, snapshot it live, stream it source → relays → sinks in network
/// namespaces (<see cref="DemoChain"/>), restore a clone from a sink's store, and show both consoles' counters side by side. `--image` runs the pipeline-only demo on a
/// VM-memory-like image instead.
/// </summary>
internal static partial class DemoCommand
{
    public static Command Create()
    {
        var image = new Option<bool>("--image") { Description = "Stream a generated VM-memory-like image instead of a live VM (with demand reads during the transfer)." };
        var size = new Option<string>("--size") { Description = "With --image: the image's size.", DefaultValueFactory = _ => "1G" };
        var probeReads = new Option<int>("--probe-reads") { Description = "With --image: random demand reads while the bulk stream runs.", DefaultValueFactory = _ => 200 };
        var cache = new Option<string>("--cache") { Description = "With --image: where the generated image is kept between runs.", DefaultValueFactory = _ => DemoImage.DefaultCache() };
        var memory = new Option<string>("--memory") { Description = "Guest RAM.", DefaultValueFactory = _ => "256M" };
        var fill = new Option<int>("--fill") { Description = "MiB of guest RAM the workload fills with non-zero data.", DefaultValueFactory = _ => 128 };
        var accel = new Option<VmAccel>("--accel") { Description = "kvm, tcg or auto (auto tries KVM and falls back to TCG when the guest stays silent).", DefaultValueFactory = _ => VmAccel.Tcg };
        var sinks = new Option<int>("--sinks") { Description = "Sinks the live snapshot reaches through the relays (2–8), each in its own network namespace.", DefaultValueFactory = _ => 3 };
        var security = CommonOptions.Security();
        var metrics = MetricsOption.Create();
        var command = new Command("demo", "Boot a small VM, snapshot it live, stream it source → relay → relay → sinks (each in its own network namespace; one by multicast), restore a clone from a sink's store and show both running side by side.")
        {
            image, size, probeReads, cache, memory, fill, accel, sinks, metrics,
        };
        foreach (var option in security.All)
        {
            command.Options.Add(option);
        }
        command.SetAction(async (r, ct) =>
        {
            // Source and sink run in this one process here, so one endpoint shows both sides.
            using var exporter = MetricsOption.Start(r, metrics);
            if (r.GetValue(sinks) is < 2 or > 8)
            {
                Console.Error.WriteLine("demo: --sinks 2–8");
                return 2;
            }
            return r.GetValue(image)
                ? await DemoImage.RunAsync(r.GetValue(size)!, r.GetValue(probeReads), r.GetValue(cache)!, security, r, ct)
                : await RunVmAsync(r.GetValue(memory)!, r.GetValue(fill), r.GetValue(accel), r.GetValue(sinks), security, r, ct);
        });
        return command;
    }

    [GeneratedRegex(@"^SC tick=(\d+) mem=([0-9a-f]{8}) disk=([0-9a-f]{8}) chk=(ok|BAD)")]
    private static partial Regex Tick();

    private static async Task<int> RunVmAsync(string memory, int fillMiB, VmAccel accel, int sinks, TransportSecurityOptions security, ParseResult r, CancellationToken ct)
    {
        using var logging = HostServices.CreateLogging(LogLevel.Warning);
        var logger = logging.CreateLogger("demo");
        // Every node secures its connections alike; resolved before any starts, so a first run creates the
        // default PKI once, here, not in racing children.
        security.Resolve(r, logger);
        var work = Path.Combine(Path.GetTempPath(), $"streamclone-demo-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            var clock = Stopwatch.StartNew();
            var guest = await AnsiConsole.Status().StartAsync("building the test guest (Debian cloud kernel, busybox initramfs, ext4 disk)…",
                _ => GuestBuilder.BuildAsync(null, logger, ct));
            AnsiConsole.MarkupLine($"[grey]guest:[/] {guest.Directory} (kernel {guest.KernelVersion})");

            var sourceQmp = Path.Combine(work, "source-qmp.sock");
            var vmOptions = new VmOptions { Guest = guest, Memory = memory, FillMiB = fillMiB, Accel = accel, WorkDir = Path.Combine(work, "vm") };
            await using var vm = await AnsiConsole.Status().StartAsync($"booting the source VM ({memory}, {accel})…",
                _ => VmLauncher.StartAsync(vmOptions with { ExtraArguments = ["-qmp", $"unix:{sourceQmp},server=on,wait=off"] }, logger, ct));
            await vm.WaitForConsoleAsync(l => Tick().IsMatch(l), TimeSpan.FromMinutes(3), 0, ct);
            AnsiConsole.MarkupLine($"[grey]source VM:[/] pid {vm.ProcessId}, {vm.Accel}, counting after {clock.Elapsed.TotalSeconds:F1} s: {Markup.Escape(vm.GetConsoleLines()[^1])}");

            // Every node is its own process in its own network namespace, as on real hosts; perf/topology.sh builds the
            // namespaces, starts the nodes in order and tears everything down, also when something fails.
            AnsiConsole.MarkupLine($"[grey]deployment:[/] {Markup.Escape(DemoChain.Describe(sinks))}, each node in its own network namespace");
            var runDir = Path.Combine(work, "topology");
            Directory.CreateDirectory(runDir);
            var topo = Path.Combine(work, "demo.topo");
            await File.WriteAllTextAsync(topo, DemoChain.Topology($"demo-{Guid.NewGuid():N}"[..13], sourceQmp, Path.Combine(work, "live"), sinks, security.ChildArguments(r)), ct);
            var snapshotClock = Stopwatch.StartNew();
            var run = await AnsiConsole.Status().StartAsync("streaming the live snapshot through the namespaces…",
                _ => TopologyRun.RunAsync(topo, runDir, DemoChain.NodeBin(), [], TimeSpan.FromMinutes(10), ct));
            var snapshotSeconds = snapshotClock.Elapsed.TotalSeconds;
            var nodes = new Table().Title("nodes").AddColumns("node", "role", "bytes in", "bytes out", "seconds", "exit");
            foreach (var node in run.Nodes)
            {
                nodes.AddRow(node.Name, node.Role, $"{node.BytesIn:N0}", $"{node.BytesOut:N0}", node.Seconds is { } sec ? $"{sec:F2}" : "-", node.ExitCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-");
            }
            AnsiConsole.Write(nodes);
            if (!run.Ok)
            {
                AnsiConsole.MarkupLine($"[red]demo: the deployment failed:[/] {Markup.Escape(run.Error ?? "")}");
                foreach (var node in run.Nodes.Where(n => n.ExitCode is not 0 and not null))
                {
                    var stderr = Path.Combine(runDir, node.Name, "stderr");
                    var last = File.Exists(stderr) ? File.ReadLines(stderr).LastOrDefault() ?? "" : "";
                    AnsiConsole.MarkupLine($"[grey]{node.Name}:[/] {Markup.Escape(last)}");
                }
                return 1;
            }
            var sinkResults = Enumerable.Range(1, sinks).Select(i => DemoChain.ReadSink(runDir, $"s{i}")).ToList();
            var identical = await DemoChain.IdenticalToFirstAsync(sinkResults, ct);
            using var sourceJson = JsonDocument.Parse(File.ReadLines(Path.Combine(runDir, "src", "stdout")).Last(l => l.StartsWith('{')));
            var live = sourceJson.RootElement.GetProperty("live");

            // The clone restores from the last sink's store (the multicast receiver's, when there is one).
            var restoreFrom = sinkResults[^1];
            using var store = ChunkStore.Open(restoreFrom.Store, logger);
            var restoreClock = Stopwatch.StartNew();
            await using var clone = await AnsiConsole.Status().StartAsync("restoring a clone from the sink's store…",
                _ => CloneRestorer.RestoreAsync(store.GetSnapshot(restoreFrom.SnapshotId)!, vmOptions, Path.Combine(work, "clone"), logger, ct));
            var restoreMs = restoreClock.Elapsed.TotalMilliseconds;

            // Both consoles side by side for a few seconds: the clone picks up at the snapshot's tick.
            var table = new Table().AddColumns($"source VM (pid {vm.ProcessId})", $"clone VM (pid {clone.Vm.ProcessId})").Expand();
            await AnsiConsole.Live(table).StartAsync(async ctx =>
            {
                for (var i = 0; i < 25; i++)
                {
                    table.Rows.Clear();
                    var left = vm.GetConsoleLines().Select(l => Tick().Match(l)).Where(m => m.Success).TakeLast(8).Select(m => m.Value).ToArray();
                    var right = clone.Vm.GetConsoleLines().Select(l => Tick().Match(l)).Where(m => m.Success).TakeLast(8).Select(m => m.Value).ToArray();
                    for (var row = 0; row < 8; row++)
                    {
                        table.AddRow(Markup.Escape(row < left.Length ? left[row] : ""), Markup.Escape(row < right.Length ? right[row] : ""));
                    }
                    ctx.Refresh();
                    await Task.Delay(200, ct);
                }
            });

            var firstClone = clone.Vm.GetConsoleLines().Select(l => Tick().Match(l)).FirstOrDefault(m => m.Success);
            var twin = firstClone is null ? null : vm.GetConsoleLines().Select(l => Tick().Match(l)).FirstOrDefault(m => m.Success && m.Groups[1].Value == firstClone.Groups[1].Value);
            var continues = firstClone is not null && twin is not null && firstClone.Groups[4].Value == "ok"
                && twin.Groups[2].Value == firstClone.Groups[2].Value && twin.Groups[3].Value == firstClone.Groups[3].Value;
            var summary = new Table().Title("demo: live VM → source → relays → sinks → clone").AddColumns("figure", "value");
            summary.AddRow("guest pause (QEMU downtime)", $"{live.GetProperty("downtime_ms")} ms (stop → restart seen over QMP: {live.GetProperty("stop_to_restart_ms").GetDouble():F1} ms)");
            summary.AddRow("snapshot streamed", $"{live.GetProperty("memory_bytes").GetInt64():N0} B memory + {live.GetProperty("disk_bytes").GetInt64():N0} B disk in {snapshotSeconds:F2} s");
            summary.AddRow("path", Markup.Escape(DemoChain.Describe(sinks)));
            summary.AddRow("sinks identical", identical == sinks ? $"[green]{identical} of {sinks}[/] (byte for byte)" : $"[red]{identical} of {sinks}[/]");
            summary.AddRow("on the wire to the last sink", $"{restoreFrom.WireBytes:N0} bytes");
            summary.AddRow("clone restored from", $"{restoreFrom.Host}'s store");
            summary.AddRow("clone running after", $"{restoreMs:F0} ms");
            summary.AddRow("clone continues", continues
                ? $"[green]yes[/]: first tick {firstClone!.Groups[1].Value}, memory and disk checksums equal to the source's at that tick"
                : "[red]NO[/]");
            AnsiConsole.Write(summary);
            return continues && identical == sinks ? 0 : 1;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
