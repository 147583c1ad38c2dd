using System.Diagnostics;
using System.Globalization;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>
/// QEMU started the way most people start it: one plain command line with <c>-drive file=…,if=virtio</c>
/// (automatic '#block…' node names), written here and not by VmLauncher. Collects the serial console's lines.
/// </summary>
internal sealed class PlainQemu : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private TaskCompletionSource _lineArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private PlainQemu(Process process) => _process = process;

    public int ProcessId => _process.Id;

    /// <summary>Starts the test guest (kernel, initramfs) with each drive given as `file=PATH,format=FMT` (if=virtio is
    /// added) and one -qmp monitor per socket (one client each).</summary>
    public static PlainQemu Start(string kernel, string initrd, IEnumerable<string> drives, IEnumerable<string> qmpSockets, int fillMiB = 32)
    {
        var info = new ProcessStartInfo("qemu-system-x86_64") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            "-machine", "pc", "-accel", "tcg", "-m", "256M", "-smp", "1", "-nodefaults", "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", string.Create(CultureInfo.InvariantCulture, $"console=ttyS0 quiet panic=-1 sc.fill={fillMiB}"),
        })
        {
            info.ArgumentList.Add(arg);
        }
        foreach (var drive in drives)
        {
            info.ArgumentList.Add("-drive");
            info.ArgumentList.Add($"{drive},if=virtio");
        }
        foreach (var socket in qmpSockets)
        {
            info.ArgumentList.Add("-qmp");
            info.ArgumentList.Add($"unix:{socket},server=on,wait=off");
        }
        var process = new Process { StartInfo = info };
        var qemu = new PlainQemu(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }
            lock (qemu._lines)
            {
                qemu._lines.Add(e.Data.TrimEnd('\r'));
                qemu._lineArrived.TrySetResult();
                qemu._lineArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        };
        process.ErrorDataReceived += (_, _) => { };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return qemu;
    }

    public List<string> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    /// <summary>The first console line after line <paramref name="after"/> that matches.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout, int after, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        while (true)
        {
            Task next;
            lock (_lines)
            {
                for (var i = after; i < _lines.Count; i++)
                {
                    if (match(_lines[i]))
                    {
                        return _lines[i];
                    }
                }
                after = _lines.Count;
                next = _lineArrived.Task;
            }
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"QEMU exited ({_process.ExitCode}); console:\n{string.Join('\n', Lines.TakeLast(20))}");
            }
            try
            {
                await next.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"no matching console line within {timeout}; last lines:\n{string.Join('\n', Lines.TakeLast(10))}");
            }
        }
    }

    /// <summary>The guest's tick at least <paramref name="tick"/>.</summary>
    public async Task<GuestLine> TickAtLeastAsync(long tick, CancellationToken ct) =>
        GuestLine.Parse(await WaitForLineAsync(l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= tick, TimeSpan.FromSeconds(120), 0, ct));

    public IReadOnlyList<GuestLine> Ticks => [.. Lines.Where(GuestLine.IsTick).Select(GuestLine.Parse)];

    /// <summary>Every path QEMU holds open (targets of /proc/PID/fd), with the bound path of each Unix socket it has.</summary>
    public IReadOnlyList<string> OpenFiles()
    {
        var unixPaths = new Dictionary<string, string>();
        foreach (var line in File.ReadLines("/proc/net/unix").Skip(1))
        {
            // Num RefCount Protocol Flags Type St Inode [Path]
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 8)
            {
                unixPaths[fields[6]] = fields[7];
            }
        }
        var open = new List<string>();
        foreach (var fd in Directory.GetFiles($"/proc/{ProcessId}/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                continue;
            }
            if (target is null)
            {
                continue;
            }
            if (target.StartsWith("socket:[", StringComparison.Ordinal) && unixPaths.TryGetValue(target[8..^1], out var path))
            {
                target = $"{target} {path}";
            }
            open.Add(target);
        }
        return open;
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    public ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit();
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        return ValueTask.CompletedTask;
    }
}
