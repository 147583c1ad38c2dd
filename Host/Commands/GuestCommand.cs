using System.CommandLine;
using Microsoft.Extensions.Logging;
using StreamClone.Qemu;
using StreamClone.TestGuest;

namespace StreamClone.Host.Commands;

/// <summary><c>guest build</c>: builds (or confirms up to date) the QEMU test guest.</summary>
internal static class GuestCommand
{
    public static Command Create()
    {
        var outDir = new Option<string?>("--out")
        {
            Description = $"Output directory (default {GuestBuilder.DefaultDirectory})",
        };
        var diskSize = new Option<int>("--disk-size-mib")
        {
            Description = "Size of the raw ext4 data disk in MiB",
            DefaultValueFactory = _ => 64,
        };
        var build = new Command("build", "Build the test guest (kernel, busybox initramfs with the workload, ext4 data disk); idempotent.");
        build.Options.Add(outDir);
        build.Options.Add(diskSize);
        build.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));
            GuestImage image;
            try
            {
                image = await GuestBuilder.BuildAsync(
                    new GuestBuildOptions { OutDir = r.GetValue(outDir), DiskSizeMiB = r.GetValue(diskSize) },
                    loggerFactory.CreateLogger("guest"), ct);
            }
            catch (InvalidOperationException e)
            {
                // A missing package, kernel or tool: the message says which; a stack trace adds nothing.
                Console.Error.WriteLine($"guest build failed: {e.Message}");
                return 1;
            }
            Console.WriteLine($"kernel  {image.KernelPath} ({image.KernelVersion})");
            Console.WriteLine($"initrd  {image.InitrdPath}");
            Console.WriteLine($"disk    {image.DiskPath}");
            return 0;
        });

        var command = new Command("guest", "The QEMU test guest used by `vm start` and the QEMU tests.");
        command.Subcommands.Add(build);
        return command;
    }
}
