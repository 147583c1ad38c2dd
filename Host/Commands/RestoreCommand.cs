using System.CommandLine;
using System.Text.Json;
using StreamClone.Clone;
using StreamClone.Qemu;
using StreamClone.Store;
using StreamClone.TestGuest;

namespace StreamClone.Host.Commands;

internal static class RestoreCommand
{
    public static Command Create()
    {
        var store = new Option<string>("--store") { Description = "The sink store holding the snapshot.", Required = true };
        var snapshot = SnapshotIdOption.Create("--snapshot", "Snapshot id (default: the newest complete one).");
        var memory = new Option<string>("--memory") { Description = "Guest RAM; must match the source VM.", DefaultValueFactory = _ => "256M" };
        var accel = new Option<VmAccel>("--accel") { Description = "kvm, tcg or auto.", DefaultValueFactory = _ => VmAccel.Tcg };
        var guest = new Option<string?>("--guest") { Description = $"Test-guest directory the source VM ran (default {GuestBuilder.DefaultDirectory}, unless --kernel is given); kernel and firmware must match." };
        var kernel = new Option<string?>("--kernel") { Description = "Kernel the source VM booted directly (-kernel): restore that machine instead of the test guest." };
        var initrd = new Option<string?>("--initrd") { Description = "With --kernel: the initrd the source VM booted." };
        var append = new Option<string?>("--append") { Description = "With --kernel: its command line (default console=ttyS0)." };
        var seconds = new Option<double>("--seconds") { Description = "Run the clone this long, printing its console, then stop it (0 = until Ctrl+C).", DefaultValueFactory = _ => 0 };
        var workDir = new Option<string?>("--work-dir") { Description = "Where the clone's disk overlay goes (default: a temp dir)." };
        var json = CommonOptions.Json();
        var logLevel = CommonOptions.LogLevel();
        var command = new Command("restore", "Start a clone VM from a complete snapshot in a sink store: its own copy-on-write disk on the frozen base, memory and devices as of the snapshot instant.")
        {
            store, snapshot, memory, accel, guest, kernel, initrd, append, seconds, workDir, json, logLevel,
        };
        command.Validators.Add(result =>
        {
            if (result.GetValue(kernel) is not null && result.GetValue(guest) is not null)
            {
                result.AddError("restore: give --guest DIR (the test guest) or --kernel FILE (another machine), not both");
            }
            else if (result.GetValue(kernel) is null && (result.GetValue(initrd) ?? result.GetValue(append)) is not null)
            {
                result.AddError("restore: --initrd and --append describe a --kernel machine; give --kernel too");
            }
        });
        command.SetAction(async (r, ct) =>
        {
            using var logging = HostServices.CreateLogging(r.GetValue(logLevel));
            var logger = logging.CreateLogger("restore");
            using var chunkStore = ChunkStore.Open(r.GetValue(store)!, logger);
            var id = r.GetValue(snapshot) ?? chunkStore.ListSnapshots().Where(s => s.IsComplete).OrderBy(s => s.CreatedUtc).LastOrDefault()?.SnapshotId
                ?? throw new InvalidDataException("the store holds no complete snapshot");
            var assembly = chunkStore.GetSnapshot(id) ?? throw new InvalidDataException($"the store has no snapshot {id}");
            // The machine the clone runs: a directly booted kernel, or (as before) the project's test guest.
            var machine = r.GetValue(kernel) is { } kernelPath
                ? new VmOptions { KernelPath = RequireFile(kernelPath), InitrdPath = r.GetValue(initrd) is { } i ? RequireFile(i) : null, KernelArguments = r.GetValue(append) }
                : new VmOptions { Guest = r.GetValue(guest) is { } dir ? GuestBuilder.Open(dir) : await GuestBuilder.BuildAsync(null, logger, ct) };
            // A work directory we chose holds the clone's overlay (its writes, VM state) and sockets: it goes
            // with the clone. One the user named is theirs to keep.
            var ownWork = r.GetValue(workDir) is null;
            var work = r.GetValue(workDir) ?? Path.Combine(Path.GetTempPath(), $"streamclone-clone-{Guid.NewGuid():N}");
            try
            {
                var vm = machine with { Memory = r.GetValue(memory)!, Accel = r.GetValue(accel) };
                await using var clone = await CloneRestorer.RestoreAsync(assembly, vm, work, logger, ct);
                var asJson = r.GetValue(json);
                if (!asJson)
                {
                    Console.WriteLine($"clone of {id} running after {clone.RestoreTime.TotalMilliseconds:F0} ms (QMP {clone.Vm.QmpSocketPath})");
                }
                using var runFor = CancellationTokenSource.CreateLinkedTokenSource(ct);
                if (r.GetValue(seconds) is > 0 and var s)
                {
                    runFor.CancelAfter(TimeSpan.FromSeconds(s));
                }
                try
                {
                    await foreach (var line in clone.Vm.ReadConsoleAsync(0, runFor.Token))
                    {
                        if (!asJson)
                        {
                            Console.WriteLine($"clone | {line}");
                        }
                    }
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                }
                if (asJson)
                {
                    Console.WriteLine(JsonSerializer.Serialize(new { snapshot = id, restore_seconds = Math.Round(clone.RestoreTime.TotalSeconds, 3), console = clone.Vm.GetConsoleLines().TakeLast(5) }, HostServices.Json));
                }
                return 0;
            }
            finally
            {
                if (ownWork && Directory.Exists(work))
                {
                    Directory.Delete(work, recursive: true);
                }
            }
        });
        return command;
    }

    /// <summary>QEMU would say "could not load kernel" among other lines: name the missing file once.</summary>
    private static string RequireFile(string path) =>
        File.Exists(path) ? Path.GetFullPath(path) : throw new FileNotFoundException($"{path} does not exist", path);
}
