using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace StreamClone.Processes;

/// <summary>
/// One child process, started from a <see cref="ProcessCommand"/>: its stdout and stderr are read line by line from
/// the start (kept, handed to the command's callbacks, awaitable with <see cref="WaitForLineAsync"/>), its exit is a
/// task (<see cref="Exited"/>), and it is ended with SIGKILL (<see cref="Kill"/>) or SIGTERM first
/// (<see cref="StopAsync"/>). Dispose kills what still runs. This file holds start, exit and signals;
/// <c>.Output</c> the readers, the kept lines and the waits on them.
/// </summary>
public sealed partial class RunningProcess : IAsyncDisposable
{
    /// <summary>After the child exits its pipes are read to EOF; a grandchild that inherited them and lives on
    /// (a daemonised helper) would hold them open forever, so the exit is reported after this at most.</summary>
    private static readonly TimeSpan DrainLimit = TimeSpan.FromSeconds(10);

    /// <summary>A SIGKILLed process is reaped within milliseconds; this bounds one stuck in an uninterruptible kernel wait.</summary>
    private static readonly TimeSpan ReapLimit = TimeSpan.FromSeconds(10);

    private const int SigTerm = 15;

    private readonly Process _process;
    private volatile bool _hasExited;
    private int _exitCode;
    private int _disposed;

    private RunningProcess(Process process, ProcessCommand command)
    {
        _process = process;
        Command = command;
        Id = process.Id;
        _stdout = new OutputLines(command.KeptLines);
        _stderr = new OutputLines(command.KeptLines);
        var stdoutReader = Task.Run(() => ReadLinesAsync(process.StandardOutput, _stdout, command.StdoutLine, command.StdoutText));
        var stderrReader = Task.Run(() => ReadLinesAsync(process.StandardError, _stderr, command.StderrLine, null));
        Exited = WatchExitAsync(stdoutReader, stderrReader);
    }

    public ProcessCommand Command { get; }

    /// <summary>How messages name the process (<see cref="ProcessCommand.Name"/>).</summary>
    public string Name => Command.Name;

    public int Id { get; }

    /// <summary>Completes with the exit code (128 + N after signal N: 137 after SIGKILL) once the process ended and
    /// its output was read to the end. Never faults.</summary>
    public Task<int> Exited { get; }

    /// <summary>True once the process ended and its output was read (what <see cref="Stdout"/> and <see cref="Stderr"/>
    /// hold is then complete).</summary>
    public bool HasExited => _hasExited;

    public int ExitCode => _hasExited ? _exitCode : throw new InvalidOperationException($"{Name} is still running");

    /// <summary>The child's stdin, with <see cref="ProcessCommand.KeepStdinOpen"/>.</summary>
    public StreamWriter Stdin => Command.KeepStdinOpen
        ? _process.StandardInput
        : throw new InvalidOperationException($"{Name} was started with its stdin closed");

    /// <summary>Starts the command. A program that cannot be started (not installed, not executable) is a
    /// <see cref="ProcessFailedException"/> saying so in one line.</summary>
    public static RunningProcess Start(ProcessCommand command)
    {
        var info = new ProcessStartInfo(command.FileName)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in command.Arguments)
        {
            info.ArgumentList.Add(argument);
        }
        foreach (var (name, value) in command.Environment)
        {
            if (value is null)
            {
                info.Environment.Remove(name);
            }
            else
            {
                info.Environment[name] = value;
            }
        }
        if (command.WorkingDirectory is not null)
        {
            info.WorkingDirectory = command.WorkingDirectory;
        }
        var process = new Process { StartInfo = info };
        try
        {
            process.Start();
        }
        catch (Win32Exception e)
        {
            process.Dispose();
            var hint = command.InstallHint is null ? "" : $" ({command.InstallHint})";
            throw new ProcessFailedException($"cannot run '{command.FileName}'{hint}: {e.Message}", e);
        }
        if (!command.KeepStdinOpen)
        {
            process.StandardInput.Close();
        }
        return new RunningProcess(process, command);
    }

    /// <summary>The exit code, or <see cref="TimeoutException"/> (naming the process and quoting its stderr) after
    /// <paramref name="timeout"/>, when the process is killed.</summary>
    public async Task<int> WaitAsync(TimeSpan timeout, CancellationToken ct = default)
    {
        try
        {
            return await Exited.WaitAsync(timeout, ct);
        }
        catch (TimeoutException)
        {
            Kill();
            throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:0.#} s; stderr: {OutputTail()}");
        }
    }

    /// <summary>SIGKILL to the process and every process it started (found through /proc: .NET cannot make a child
    /// the leader of its own process group), then waits until the kernel reaped it. No cleanup runs in the child.</summary>
    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
            _process.WaitForExit(ReapLimit);
        }
        catch (InvalidOperationException)
        {
            // Exited and reaped between the check and the kill, or already disposed.
        }
        catch (Win32Exception)
        {
            // Gone, or not ours to signal any more.
        }
    }

    /// <summary>SIGTERM (the child cancels and cleans up: a live source removes its disk views), then SIGKILL if it
    /// is still running after <paramref name="grace"/>. Returns the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan grace)
    {
        if (!_process.HasExited && SysKill(Id, SigTerm) != 0)
        {
            // ESRCH: it ended meanwhile; anything else leaves SIGKILL below to end it.
        }
        try
        {
            return await Exited.WaitAsync(grace);
        }
        catch (TimeoutException)
        {
            Kill();
            return await Exited;
        }
    }

    /// <summary>The one line to report this process's failure: the command and the tail of its stderr.</summary>
    public ProcessFailedException Failure() =>
        new($"'{Command.CommandLine}' exited with {ExitCode}: {OutputTail()}") { ExitCode = ExitCode };

    private async Task<int> WatchExitAsync(Task stdoutReader, Task stderrReader)
    {
        await _process.WaitForExitAsync(CancellationToken.None);
        await Task.WhenAll(stdoutReader, stderrReader).WaitAsync(DrainLimit).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _exitCode = _process.ExitCode;
        // Published before the waiters on output lines wake: a waiter that sees the end of the output sees the exit code.
        _hasExited = true;
        _stdout.Complete();
        _stderr.Complete();
        return _exitCode;
    }

    /// <summary>Kills what still runs and waits (bounded) for its exit. Never throws.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        Kill();
        await ((Task)Exited).WaitAsync(DrainLimit + ReapLimit).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _process.Dispose();
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int SysKill(int pid, int signal);
}
