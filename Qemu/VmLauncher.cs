using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Processes;

namespace StreamClone.Qemu;

/// <summary>
/// One QEMU process running a <see cref="VmOptions"/> machine (usually the test guest): command line, serial console capture (QEMU's stdout, tailed
/// line by line and copied to WorkDir/console.log), the QMP client, and KVM detection (a guest silent past
/// a deadline under KVM is killed and reported; Auto then falls back to TCG). Dispose quits or kills QEMU
/// and removes what the launcher created. Files: this one holds start and lifecycle; <c>.Console</c> the
/// console lines and waits; <c>.CommandLine</c> the QEMU arguments.
/// </summary>
public sealed partial class VmLauncher : IAsyncDisposable
{
    /// <summary>First line of /init (guest/init.sh): the guest kernel runs, not only QEMU.</summary>
    public const string InitLinePrefix = "SC init";

    /// <summary>Prefix of the workload's tick lines (guest/workload.c).</summary>
    public const string TickLinePrefix = "SC tick=";

    /// <summary>QEMU creates its -qmp socket before it starts the guest; this bounds a QEMU that never does.</summary>
    private static readonly TimeSpan QmpSocketTimeout = TimeSpan.FromSeconds(15);

    /// <summary>QEMU's stderr lines kept for failure messages: any start error fits many times over.</summary>
    private const int KeptStderrLines = 1000;

    private readonly RunningProcess _process;
    private readonly ILogger _logger;
    private readonly bool _ownsWorkDir;
    private readonly bool _ownsDisk;
    private QmpClient? _qmp;
    private int _disposed;

    private VmLauncher(RunningProcess process, ConsoleRecorder console, VmOptions options, VmAccel accel, string workDir, bool ownsWorkDir,
        string qmpSocket, string? diskPath, bool ownsDisk, IReadOnlyList<string> arguments, ILogger logger)
    {
        _process = process;
        _console = console;
        Options = options;
        Accel = accel;
        WorkDir = workDir;
        _ownsWorkDir = ownsWorkDir;
        QmpSocketPath = qmpSocket;
        DiskPath = diskPath;
        _ownsDisk = ownsDisk;
        Arguments = arguments;
        _logger = logger;
        ConsoleLogPath = console.LogPath;
        Exited = WaitForExitAsync();
        Volatile.Write(ref console.Owner, this);
    }

    public VmOptions Options { get; }

    /// <summary>The accelerator the guest actually runs under (Auto resolved).</summary>
    public VmAccel Accel { get; }

    public string WorkDir { get; }

    public string QmpSocketPath { get; }

    /// <summary>The disk image the VM was started on (the active layer changes with live snapshots); null for a machine without a disk.</summary>
    public string? DiskPath { get; }

    public string ConsoleLogPath { get; }

    /// <summary>QEMU's arguments (without the binary).</summary>
    public IReadOnlyList<string> Arguments { get; }

    public int ProcessId => _process.Id;

    /// <summary>From process start to the guest's init line (null with IncomingDefer or WaitForBoot=false).</summary>
    public TimeSpan? BootTime { get; private set; }

    /// <summary>Completes with QEMU's exit code when the process ends.</summary>
    public Task<int> Exited { get; }

    public QmpClient Qmp => _qmp ?? throw new InvalidOperationException("QMP is not connected yet");

    /// <summary>
    /// Starts QEMU, connects QMP and (unless <see cref="VmOptions.IncomingDefer"/> or
    /// <see cref="VmOptions.WaitForBoot"/> is false) waits for the guest's init line. With
    /// <see cref="VmAccel.Kvm"/> a silent guest fails with <see cref="KvmUnusableException"/> within
    /// <see cref="VmOptions.KvmBootDeadline"/>; <see cref="VmAccel.Auto"/> then retries under TCG.
    /// </summary>
    public static async Task<VmLauncher> StartAsync(VmOptions options, ILogger? logger = null, CancellationToken ct = default)
    {
        logger ??= NullLogger.Instance;
        if (options.Accel != VmAccel.Auto)
            return await StartOnceAsync(options, options.Accel, logger, ct);
        if (!File.Exists("/dev/kvm"))
        {
            QemuLog.KvmFallback(logger, "/dev/kvm does not exist");
            return await StartOnceAsync(options, VmAccel.Tcg, logger, ct);
        }
        if (!options.WaitsForBoot)
        {
            // Without a boot to watch KVM cannot be proven to work: use what always does.
            return await StartOnceAsync(options, VmAccel.Tcg, logger, ct);
        }
        try
        {
            return await StartOnceAsync(options, VmAccel.Kvm, logger, ct);
        }
        catch (KvmUnusableException e)
        {
            QemuLog.KvmFallback(logger, e.Message);
            return await StartOnceAsync(options, VmAccel.Tcg, logger, ct);
        }
    }

    private static async Task<VmLauncher> StartOnceAsync(VmOptions options, VmAccel accel, ILogger logger, CancellationToken ct)
    {
        var ownsWorkDir = options.WorkDir is null;
        // Short /tmp path: a Unix socket path must fit in 108 bytes.
        var workDir = options.WorkDir ?? Directory.CreateTempSubdirectory("sc-vm-").FullName;
        Directory.CreateDirectory(workDir);
        var qmpSocket = options.QmpSocketPath ?? Path.Combine(workDir, "qmp.sock");
        var ownsDisk = options.DiskPath is null && options.DiskTemplate is not null;
        var diskPath = options.DiskPath ?? (ownsDisk ? Path.Combine(workDir, "disk.raw") : null);
        VmLauncher? vm = null;
        try
        {
            if (ownsDisk)
                File.Copy(options.DiskTemplate!, diskPath!, overwrite: true);
            if (File.Exists(qmpSocket))
                File.Delete(qmpSocket);

            var arguments = BuildArguments(options, accel, qmpSocket, diskPath);
            QemuLog.VmStarting(logger, accel.ToString().ToLowerInvariant(), options.QemuBinary + " " + string.Join(' ', arguments));

            // The console's recorder exists before QEMU does, so no line is missed.
            var console = new ConsoleRecorder(Path.Combine(workDir, "console.log"));
            var started = Stopwatch.StartNew();
            RunningProcess process;
            try
            {
                process = RunningProcess.Start(new ProcessCommand(options.QemuBinary, arguments)
                {
                    Name = "QEMU",
                    InstallHint = "apt-get install qemu-system-x86",
                    // The guest's serial console reads requests from QEMU's stdin (WriteConsoleLineAsync).
                    KeepStdinOpen = true,
                    StdoutLine = console.Add,
                    KeptLines = KeptStderrLines,
                });
            }
            catch (ProcessFailedException e)
            {
                console.Complete();
                throw new VmStartException(e.Message, e);
            }
            vm = new VmLauncher(process, console, options, accel, workDir, ownsWorkDir, qmpSocket, diskPath, ownsDisk, arguments, logger);
            try
            {
                await vm.ConnectQmpAsync(ct);
            }
            catch (VmStartException e) when (accel == VmAccel.Kvm)
            {
                // E.g. "Could not access KVM kernel module", or the MSR abort of -cpu host here.
                throw new KvmUnusableException($"KVM unusable: QEMU failed under -accel kvm: {e.Message}", e);
            }
            if (options.WaitsForBoot)
            {
                await vm.WaitForBootAsync(started, ct);
                QemuLog.VmBooted(logger, accel.ToString().ToLowerInvariant(), (long)vm.BootTime!.Value.TotalMilliseconds);
            }
            return vm;
        }
        catch
        {
            if (vm is not null)
            {
                await vm.DisposeAsync();
            }
            else
            {
                if (ownsDisk)
                    File.Delete(diskPath!);
                if (ownsWorkDir)
                    Directory.Delete(workDir, recursive: true);
            }
            throw;
        }
    }

    private async Task ConnectQmpAsync(CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
                throw Failure($"QEMU exited ({ExitDescription()}) during start-up");
            if (File.Exists(QmpSocketPath))
            {
                try
                {
                    _qmp = await QmpClient.ConnectAsync(QmpSocketPath, null, _logger, ct);
                    return;
                }
                catch (QmpProtocolException) when (deadline.Elapsed < QmpSocketTimeout && !_process.HasExited)
                {
                    // Socket file made before listen(); try again.
                }
            }
            if (deadline.Elapsed > QmpSocketTimeout)
                throw Failure($"QEMU did not open its QMP socket {QmpSocketPath} within {QmpSocketTimeout.TotalSeconds:0} s");
            // QEMU creates the socket within tens of ms of exec; poll at that grain (no inotify in .NET).
            await Task.WhenAny(Exited, Task.Delay(20, ct));
            ct.ThrowIfCancellationRequested();
        }
    }

    private async Task WaitForBootAsync(Stopwatch started, CancellationToken ct)
    {
        var limit = Accel == VmAccel.Kvm ? Options.KvmBootDeadline : Options.BootTimeout;
        var remaining = limit - started.Elapsed;
        try
        {
            await WaitForConsoleAsync(l => l.StartsWith(InitLinePrefix, StringComparison.Ordinal),
                remaining > TimeSpan.Zero ? remaining : TimeSpan.FromMilliseconds(1), 0, ct);
            BootTime = started.Elapsed;
        }
        catch (TimeoutException) when (Accel == VmAccel.Kvm)
        {
            throw new KvmUnusableException(
                $"KVM unusable: the guest printed no '{InitLinePrefix}' line within {limit.TotalSeconds:0.#} s under -accel kvm " +
                $"(QEMU runs, the vCPU hangs; on these machines /dev/kvm is paravirtualised without vmx/svm). The VM was killed; use --accel tcg. " +
                $"Console: {ConsoleTail()}");
        }
        catch (VmStartException e) when (Accel == VmAccel.Kvm)
        {
            throw new KvmUnusableException($"KVM unusable: QEMU failed under -accel kvm: {e.Message}", e);
        }
        catch (TimeoutException e)
        {
            throw Failure($"guest did not boot: {e.Message}");
        }
    }

    private VmStartException Failure(string what) =>
        new($"{what}; stderr: {StdErrTail()}; command: {Options.QemuBinary} {string.Join(' ', Arguments)}");

    /// <summary>The last of QEMU's stderr (e.g. why it refused an incoming migration).</summary>
    public string StderrTail => StdErrTail();

    private string StdErrTail()
    {
        var text = string.Join(" | ", _process.StderrLines);
        return text.Length == 0 ? "(empty)" : text.Length <= 1500 ? text : "…" + text[^1500..];
    }

    private string ExitDescription() => _process.HasExited ? $"exit code {_process.ExitCode}" : "still running";

    private async Task<int> WaitForExitAsync()
    {
        var exitCode = await _process.Exited;
        _console.Complete();
        QemuLog.VmExited(_logger, exitCode);
        return exitCode;
    }

    /// <summary>Asks QEMU to quit (QMP, 2 s), kills it otherwise, then removes the work directory (if the
    /// launcher made it) or the disk copy. Never throws.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        if (_qmp is not null && !_process.HasExited)
            await _qmp.QuitAsync(TimeSpan.FromSeconds(2));
        if (await Task.WhenAny(Exited, Task.Delay(TimeSpan.FromSeconds(3))) != Exited)
            _process.Kill();
        await ((Task)Exited).WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (_qmp is not null)
            await _qmp.DisposeAsync();
        await _process.DisposeAsync();
        try
        {
            if (_ownsWorkDir)
            {
                Directory.Delete(WorkDir, recursive: true);
            }
            else
            {
                if (_ownsDisk)
                    File.Delete(DiskPath!);
                File.Delete(QmpSocketPath);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: a file held open elsewhere is left behind rather than failing disposal.
        }
    }
}
