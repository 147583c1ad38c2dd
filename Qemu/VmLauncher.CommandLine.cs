namespace StreamClone.Qemu;

public sealed partial class VmLauncher
{
    /// <summary>Node names of the data disk: protocol node (file) and format node (what the device uses,
    /// and what LiveDiskSnapshot snapshots).</summary>
    public const string DiskFileNode = "file0";

    public const string DiskNode = "disk0";

    /// <summary>
    /// The QEMU command line (man qemu-system, QEMU 7.2). Everything that shapes the machine — machine
    /// type, RAM, vCPUs, devices and their ids — depends only on the options, so a VM started with
    /// <c>IncomingDefer</c> accepts another's migration stream ("pc.ram" block name, qemu-on-these-machines.md).
    /// </summary>
    internal static List<string> BuildArguments(VmOptions options, VmAccel accel, string qmpSocket, string? diskPath)
    {
        if (accel == VmAccel.Auto)
            throw new ArgumentException("resolve Auto to Kvm or Tcg first", nameof(accel));
        var args = new List<string>
        {
            "-name", "streamclone-vm",
            "-machine", "pc",
            "-accel", accel == VmAccel.Kvm ? "kvm" : "tcg",
            "-m", options.Memory,
            "-smp", "1",
            "-nodefaults",
            "-no-user-config",
            "-display", "none",
            // The launcher reads the serial console from QEMU's stdout; no HMP monitor on it.
            "-serial", "stdio",
            "-monitor", "none",
            // A guest panic (panic=-1 reboots at once) ends QEMU instead of looping.
            "-no-reboot",
        };
        if (options.Kernel is { } kernel)
        {
            args.AddRange(["-kernel", kernel]);
            if (options.Initrd is { } initrd)
                args.AddRange(["-initrd", initrd]);
            args.AddRange(["-append", options.Append!]);
        }
        if (diskPath is not null)
        {
            args.AddRange([
                "-blockdev", $"driver=file,filename={EscapeOption(diskPath)},node-name={DiskFileNode}",
                "-blockdev", $"driver={options.DiskFormat},file={DiskFileNode},node-name={DiskNode}",
                "-device", $"virtio-blk-pci,drive={DiskNode},id=vd0",
            ]);
        }
        args.AddRange(["-qmp", $"unix:{EscapeOption(qmpSocket)},server=on,wait=off"]);
        if (options.IncomingDefer)
            args.AddRange(["-incoming", "defer"]);
        args.AddRange(options.ExtraArguments);
        return args;
    }

    /// <summary>QEMU's option syntax splits on ',' and takes ",," as a literal comma.</summary>
    private static string EscapeOption(string value) => value.Replace(",", ",,", StringComparison.Ordinal);
}
