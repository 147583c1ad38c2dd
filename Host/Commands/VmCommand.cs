using System.CommandLine;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using StreamClone.Qemu;
using StreamClone.TestGuest;

namespace StreamClone.Host.Commands;

/// <summary><c>vm start</c>: runs the test guest until Ctrl+C, printing its console.</summary>
internal static class VmCommand
{
    public static Command Create()
    {
        var memory = new Option<string>("--memory") { Description = "Guest RAM (QEMU -m syntax)", DefaultValueFactory = _ => "256M" };
        var fill = new Option<int>("--fill") { Description = "MiB of RAM the workload fills with non-zero data", DefaultValueFactory = _ => 16 };
        var accel = new Option<VmAccel>("--accel") { Description = "kvm, tcg or auto (KVM if the guest really boots under it)", DefaultValueFactory = _ => VmAccel.Auto };
        var qmp = new Option<string?>("--qmp") { Description = "QMP socket path (default: in the VM's temp directory)" };
        var guest = new Option<string?>("--guest") { Description = $"Built guest directory (default {GuestBuilder.DefaultDirectory}, built if missing)" };
        var disk = new Option<string?>("--disk") { Description = "Data disk to run on (default: a temporary copy of the guest's disk)" };
        var incoming = new Option<bool>("--incoming-defer") { Description = "Start as a restore target (-incoming defer); the guest runs after migrate-incoming" };

        var start = new Command("start", "Start the test guest under QEMU and print its console until Ctrl+C.");
        foreach (var o in new Option[] { memory, fill, accel, qmp, guest, disk, incoming })
            start.Options.Add(o);
        start.SetAction(async (ParseResult r, CancellationToken invocationToken) =>
        {
            // Ctrl+C / SIGTERM must end in VmLauncher's dispose (quit QEMU, delete its temp files), so
            // the signals are taken here and turned into cancellation instead of process exit.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(invocationToken);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
            var ct = stop.Token;
            using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));
            var logger = loggerFactory.CreateLogger("vm");
            try
            {
                return await RunAsync(r, logger, ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return 0; // Stopped during start-up; the launcher already cleaned up.
            }
            catch (Exception e) when (e is VmStartException or QmpProtocolException or InvalidOperationException or FileNotFoundException)
            {
                // KvmUnusableException included: its message says what happened and what to use instead.
                Console.Error.WriteLine($"vm start failed: {e.Message}");
                return 1;
            }
        });

        async Task<int> RunAsync(ParseResult r, ILogger logger, CancellationToken ct)
        {
            var guestDir = r.GetValue(guest);
            var image = guestDir is null
                ? await GuestBuilder.BuildAsync(null, logger, ct)
                : GuestBuilder.Open(guestDir);
            await using var vm = await VmLauncher.StartAsync(new VmOptions
            {
                Guest = image,
                Memory = r.GetValue(memory)!,
                FillMiB = r.GetValue(fill),
                Accel = r.GetValue(accel),
                QmpSocketPath = r.GetValue(qmp),
                DiskPath = r.GetValue(disk),
                IncomingDefer = r.GetValue(incoming),
            }, logger, ct);
            Console.Error.WriteLine($"QEMU pid {vm.ProcessId} ({vm.Accel.ToString().ToLowerInvariant()}), QMP {vm.QmpSocketPath}, " +
                                    $"boot {vm.BootTime?.TotalMilliseconds:0} ms; Ctrl+C stops it");
            try
            {
                await foreach (var line in vm.ReadConsoleAsync(0, ct))
                    Console.WriteLine(line);
                Console.Error.WriteLine($"QEMU exited with {await vm.Exited}");
                return 1;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return 0;
            }
        }

        var command = new Command("vm", "Run the QEMU test guest.");
        command.Subcommands.Add(start);
        return command;
    }
}
