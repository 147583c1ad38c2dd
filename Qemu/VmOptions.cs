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

/// <summary>What <see cref="VmLauncher.StartAsync"/> starts. Two VMs with equal options (apart from
/// paths and <see cref="IncomingDefer"/>) have the same machine, so one's migration stream loads in the other.</summary>
public sealed record VmOptions
{
    public required GuestImage Guest { get; init; }

    /// <summary>Guest RAM as QEMU's <c>-m</c> takes it (256M, 1G).</summary>
    public string Memory { get; init; } = "256M";

    /// <summary>MiB of RAM the workload fills with non-zero data (kernel parameter sc.fill).</summary>
    public int FillMiB { get; init; } = 16;

    public VmAccel Accel { get; init; } = VmAccel.Tcg;

    /// <summary>QMP socket; default WorkDir/qmp.sock.</summary>
    public string? QmpSocketPath { get; init; }

    /// <summary>The data disk the VM writes. Default: a private copy of <see cref="GuestImage.DiskPath"/>
    /// in the work directory (removed on dispose), so VMs never share or dirty the pristine disk.</summary>
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

    /// <summary>Wait for the guest's "SC init" line before <see cref="VmLauncher.StartAsync"/> returns.</summary>
    public bool WaitForBoot { get; init; } = true;

    /// <summary>Directory for the QMP socket, disk copy and console log; default a new temp directory,
    /// deleted on dispose. A given directory is kept (only the files the launcher made are removed).</summary>
    public string? WorkDir { get; init; }

    /// <summary>Appended to the QEMU command line (e.g. a memory backend).</summary>
    public IReadOnlyList<string> ExtraArguments { get; init; } = [];

    public string QemuBinary { get; init; } = "qemu-system-x86_64";
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
