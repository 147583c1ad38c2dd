using System.Globalization;

namespace StreamClone.Qemu;

/// <summary>How QEMU executes the guest.</summary>
public enum VmAccel
{
    /// <summary>KVM when /dev/kvm exists and the guest really boots under it, else TCG.</summary>
    Auto,

    /// <summary>KVM or a clear <see cref="KvmUnusableException"/> within <see cref="VmOptions.KvmBootDeadline"/>.</summary>
    Kvm,

    /// <summary>Software emulation: slow but works everywhere (what the tests use).</summary>
    Tcg,
}

/// <summary>
/// The machine <see cref="VmLauncher.StartAsync"/> starts: any x86 machine of the launcher's shape (pc, one vCPU,
/// serial console, QMP), with an optional direct-boot kernel, initrd and data disk. Two VMs with equal options
/// (apart from paths and <see cref="IncomingDefer"/>) have the same machine, so one's migration stream loads in the
/// other. The project's test guest is one way of filling it (<see cref="Guest"/>); a restore needs none of it.
/// </summary>
public sealed record VmOptions
{
    /// <summary>
    /// The project's test guest (<c>guest build</c>): when set, it supplies the kernel, initrd, disk template and
    /// kernel command line (with <see cref="FillMiB"/>) that are not set explicitly, and its init line is what
    /// <see cref="WaitForBoot"/> waits for. Null: the machine is what the other options say.
    /// </summary>
    public GuestImage? Guest { get; init; }

    /// <summary>Kernel for direct boot (<c>-kernel</c>); default the test guest's. Null with no guest: no direct boot.</summary>
    public string? KernelPath { get; init; }

    /// <summary>Initrd for direct boot (<c>-initrd</c>, only with a kernel); default the test guest's.</summary>
    public string? InitrdPath { get; init; }

    /// <summary>
    /// Kernel command line (<c>-append</c>, only with a kernel). Default: the test guest's
    /// (<c>console=ttyS0 quiet panic=-1 sc.fill=N</c>), else <c>console=ttyS0</c> (the launcher reads the serial console).
    /// </summary>
    public string? KernelArguments { get; init; }

    /// <summary>
    /// A disk image the launcher copies into its work dir for this VM (removed on dispose), so VMs never share or
    /// dirty it; used when <see cref="DiskPath"/> is null. Default the test guest's disk. Null with neither: no disk.
    /// </summary>
    public string? DiskTemplatePath { get; init; }

    /// <summary>Guest RAM as QEMU's <c>-m</c> takes it (256M, 1G).</summary>
    public string Memory { get; init; } = "256M";

    /// <summary>MiB of RAM the test guest's workload fills with non-zero data (kernel parameter sc.fill).</summary>
    public int FillMiB { get; init; } = 16;

    public VmAccel Accel { get; init; } = VmAccel.Tcg;

    /// <summary>QMP socket; default WorkDir/qmp.sock.</summary>
    public string? QmpSocketPath { get; init; }

    /// <summary>The data disk the VM writes, used as is. Default: a private copy of <see cref="DiskTemplatePath"/>.</summary>
    public string? DiskPath { get; init; }

    /// <summary>QEMU block driver of the disk image: raw or qcow2.</summary>
    public string DiskFormat { get; init; } = "raw";

    /// <summary>Start with <c>-incoming defer</c> (a restore target: the guest runs only after
    /// migrate-incoming). No boot wait then.</summary>
    public bool IncomingDefer { get; init; }

    /// <summary>Under KVM a guest on these machines hangs silently after SeaBIOS; a guest that does not
    /// print its init line this fast is declared unusable under KVM (a working KVM boots it in ~1 s).</summary>
    public TimeSpan KvmBootDeadline { get; init; } = TimeSpan.FromSeconds(8);

    /// <summary>Bound on the init line under TCG (measured 2.3–3.4 s; generous for a shared 2-core host).</summary>
    public TimeSpan BootTimeout { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>
    /// Wait for the test guest's "SC init" line before <see cref="VmLauncher.StartAsync"/> returns. Only with
    /// <see cref="Guest"/>: another machine prints no line the launcher knows.
    /// </summary>
    public bool WaitForBoot { get; init; } = true;

    /// <summary>Directory for the QMP socket, disk copy and console log; default a new temp directory,
    /// deleted on dispose. A given directory is kept (only the files the launcher made are removed).</summary>
    public string? WorkDir { get; init; }

    /// <summary>Appended to the QEMU command line (e.g. a memory backend).</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    public string QemuBinary { get; init; } = "qemu-system-x86_64";

    /// <summary>The kernel QEMU boots directly, if any (explicit, else the test guest's).</summary>
    internal string? Kernel => KernelPath ?? Guest?.KernelPath;

    /// <summary>The initrd, if any, with <see cref="Kernel"/> only.</summary>
    internal string? Initrd => Kernel is null ? null : InitrdPath ?? Guest?.InitrdPath;

    /// <summary>The kernel command line, with <see cref="Kernel"/> only.</summary>
    internal string? Append => Kernel is null ? null
        : KernelArguments ?? (Guest is not null && KernelPath is null
            ? string.Create(CultureInfo.InvariantCulture, $"console=ttyS0 quiet panic=-1 sc.fill={FillMiB}")
            : "console=ttyS0");

    /// <summary>The image a private disk copy is made from when <see cref="DiskPath"/> is null.</summary>
    internal string? DiskTemplate => DiskTemplatePath ?? Guest?.DiskPath;

    /// <summary>True when the launcher waits for the test guest's init line (and so can tell a working KVM).</summary>
    internal bool WaitsForBoot => WaitForBoot && !IncomingDefer && Guest is not null;
}

/// <summary>QEMU did not start or the guest did not boot; the message carries QEMU's stderr.</summary>
public class VmStartException : Exception
{
    public VmStartException()
    {
    }

    public VmStartException(string message)
        : base(message)
    {
    }

    public VmStartException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>The guest cannot run under KVM here (QEMU refused it, or the guest stayed silent past the
/// deadline). The VM was killed; use TCG.</summary>
public class KvmUnusableException : VmStartException
{
    public KvmUnusableException()
    {
    }

    public KvmUnusableException(string message)
        : base(message)
    {
    }

    public KvmUnusableException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
