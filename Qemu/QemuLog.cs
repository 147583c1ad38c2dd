using Microsoft.Extensions.Logging;

namespace StreamClone.Qemu;

/// <summary>Log events of the QEMU pieces (Shared range 4xxx; this area uses 4100–4199, never reuse an id).</summary>
internal static partial class QemuLog
{
    [LoggerMessage(4100, LogLevel.Information, "Guest image up to date in {Directory} (kernel {KernelVersion})")]
    public static partial void GuestUpToDate(ILogger logger, string directory, string kernelVersion);

    [LoggerMessage(4101, LogLevel.Information, "Building guest image in {Directory} (kernel {KernelVersion}, modules {Modules})")]
    public static partial void GuestBuilding(ILogger logger, string directory, string kernelVersion, string modules);

    [LoggerMessage(4102, LogLevel.Information, "Installing missing packages: {Packages}")]
    public static partial void InstallingPackages(ILogger logger, string packages);

    [LoggerMessage(4110, LogLevel.Information, "Starting QEMU ({Accel}): {CommandLine}")]
    public static partial void VmStarting(ILogger logger, string accel, string commandLine);

    [LoggerMessage(4111, LogLevel.Information, "Guest booted under {Accel}: first line after {ElapsedMs} ms")]
    public static partial void VmBooted(ILogger logger, string accel, long elapsedMs);

    [LoggerMessage(4112, LogLevel.Warning, "KVM unusable: {Reason}; falling back to TCG")]
    public static partial void KvmFallback(ILogger logger, string reason);

    [LoggerMessage(4113, LogLevel.Debug, "QEMU exited with {ExitCode}")]
    public static partial void VmExited(ILogger logger, int exitCode);

    [LoggerMessage(4120, LogLevel.Debug, "QMP {Path}: connected to QEMU {Version}")]
    public static partial void QmpConnected(ILogger logger, string path, string version);

    [LoggerMessage(4121, LogLevel.Trace, "QMP event {Name} #{Sequence}")]
    public static partial void QmpEvent(ILogger logger, string name, long sequence);

    [LoggerMessage(4122, LogLevel.Debug, "QMP {Path}: reader stopped: {Reason}")]
    public static partial void QmpReaderStopped(ILogger logger, string path, string reason);
}
