using System.CommandLine;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using StreamClone.Clone;
using StreamClone.Processes;
using StreamClone.Qemu;
using StreamClone.Shared;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using StreamClone.TestGuest;

namespace StreamClone.Host.Commands;

/// <summary>
/// The README's main job: boot the test guest, snapshot it live, stream it source → sink, restore a
/// clone, and show both consoles' counters side by side. `--image` runs the pipeline-only demo on a
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
        var security = CommonOptions.Security();
        var metrics = MetricsOption.Create();
        var command = new Command("demo", "Boot a small VM, snapshot it live, stream it source → sink over loopback, restore a clone and show both running side by side.")
        {
            image, size, probeReads, cache, memory, fill, accel, metrics,
        };
        foreach (var option in security.All)
        {
            command.Options.Add(option);
        }
        command.SetAction(async (r, ct) =>
        {
            // Source and sink run in this one process here, so one endpoint shows both sides.
            using var exporter = MetricsOption.Start(r, metrics);
            return r.GetValue(image)
                ? await DemoImage.RunAsync(r.GetValue(size)!, r.GetValue(probeReads), r.GetValue(cache)!, security, r, ct)
                : await RunVmAsync(r.GetValue(memory)!, r.GetValue(fill), r.GetValue(accel), security, r, ct);
        });
        return command;
    }

    [GeneratedRegex(@"^SC tick=(\d+) mem=([0-9a-f]{8}) disk=([0-9a-f]{8}) chk=(ok|BAD)")]
    private static partial Regex Tick();

    private static async Task<int> RunVmAsync(string memory, int fillMiB, VmAccel accel, TransportSecurityOptions security, ParseResult r, CancellationToken ct)
    {
        using var logging = HostServices.CreateLogging(LogLevel.Warning);
        var logger = logging.CreateLogger("demo");
        // The sink here and the source process secure their connection alike; resolved before the source
        // starts, so a first run creates the default PKI once, here.
        var tls = security.Resolve(r, logger);
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

            // The source is its own process, as on a real host; the sink runs here to show its progress.
            var portFile = Path.Combine(work, "port");
            await using var source = RunningProcess.Start(ProcessCommand.ThisProgram("source", ["source", "--qmp", sourceQmp, "--work-dir", Path.Combine(work, "live"), "--listen", "127.0.0.1:0", "--port-file", portFile, "--sessions", "1", "--json", .. security.ChildArguments(r)]));
            var port = await PortFile.WaitAsync(portFile, source, TimeSpan.FromSeconds(60), ct);
            var snapshotClock = Stopwatch.StartNew();
            using var store = ChunkStore.Open(Path.Combine(work, "store"), logger);
            UpstreamSession? session = null;
            try
            {
                session = await UpstreamSession.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), store, new UpstreamOptions { Tls = tls }, TransportOptions.Default, logger, ct);
                var run = session.RunAsync();
                await ProgressView.ShowSinkAsync(session, run);
                await run;
            }
            finally
            {
                if (session is not null)
                {
                    await session.DisposeAsync();
                }
            }
            var snapshotSeconds = snapshotClock.Elapsed.TotalSeconds;
            await source.WaitAsync(TimeSpan.FromSeconds(60), ct);
            using var sourceJson = JsonDocument.Parse(source.LastLine);
            var live = sourceJson.RootElement.GetProperty("live");

            var restoreClock = Stopwatch.StartNew();
            await using var clone = await AnsiConsole.Status().StartAsync("restoring a clone from the sink's store…",
                _ => CloneRestorer.RestoreAsync(store.GetSnapshot(session!.Snapshot.SnapshotId)!, vmOptions, Path.Combine(work, "clone"), logger, ct));
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
            var summary = new Table().Title("demo: live VM → source → sink → clone").AddColumns("figure", "value");
            summary.AddRow("guest pause (QEMU downtime)", $"{live.GetProperty("downtime_ms")} ms (stop → restart seen over QMP: {live.GetProperty("stop_to_restart_ms").GetDouble():F1} ms)");
            summary.AddRow("snapshot streamed", $"{live.GetProperty("memory_bytes").GetInt64():N0} B memory + {live.GetProperty("disk_bytes").GetInt64():N0} B disk in {snapshotSeconds:F2} s");
            summary.AddRow("on the wire", $"{session!.WireBytes:N0} bytes");
            summary.AddRow("clone running after", $"{restoreMs:F0} ms");
            summary.AddRow("clone continues", continues
                ? $"[green]yes[/]: first tick {firstClone!.Groups[1].Value}, memory and disk checksums equal to the source's at that tick"
                : "[red]NO[/]");
            AnsiConsole.Write(summary);
            return continues ? 0 : 1;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }
}
