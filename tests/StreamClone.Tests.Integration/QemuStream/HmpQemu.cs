using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace StreamClone.Tests.Integration.QemuStream;

/// <summary>
/// Test-only driver of one qemu-system-x86_64 process through its human monitor on stdin/stdout
/// (<c>-monitor stdio</c>). Not a QMP client: it sends a line and returns the text printed before the next
/// "(qemu) " prompt, with the readline echo's escape sequences removed. Disposing kills the process.
/// </summary>
internal sealed partial class HmpQemu : IAsyncDisposable
{
    public const string Binary = "qemu-system-x86_64";

    private readonly StringBuilder _stdout = new();
    private readonly Lock _lock = new();
    private RunningProcess _process = null!;
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _scanFrom;

    /// <summary>Set under the lock, before the last signal, once QEMU exited and its stdout was read to the end: a
    /// waiter woken by that signal must see it.</summary>
    private bool _exited;

    private HmpQemu()
    {
    }

    public string Stderr => _process.Stderr;

    public static bool IsInstalled() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, Binary)));

    public static async Task<HmpQemu> StartAsync(IEnumerable<string> args, CancellationToken ct)
    {
        var qemu = new HmpQemu();
        // The prompt ends without a newline: the monitor's text is taken as it arrives, not by lines.
        qemu._process = RunningProcess.Start(new ProcessCommand(Binary, [.. args]) { Name = "QEMU", KeepStdinOpen = true, StdoutText = qemu.OnStdout });
        _ = qemu.SignalExitAsync();
        try
        {
            await qemu.WaitForPromptAsync(TimeSpan.FromSeconds(30), ct);
        }
        catch
        {
            await qemu.DisposeAsync();
            throw;
        }

        return qemu;
    }

    /// <summary>Sends one HMP command; returns what it printed (without echo and prompt).</summary>
    public async Task<string> CommandAsync(string command, CancellationToken ct, TimeSpan? timeout = null)
    {
        try
        {
            await _process.Stdin.WriteLineAsync(command.AsMemory(), ct);
            await _process.Stdin.FlushAsync(ct);
        }
        catch (IOException e)
        {
            // QEMU exits on a failed incoming migration: report that, with its stderr, not the broken stdin pipe.
            await _process.Exited.WaitAsync(TimeSpan.FromSeconds(10), ct);
            throw new InvalidOperationException($"QEMU exited with code {_process.ExitCode} before '{command}'; stderr:\n{Stderr}", e);
        }
        var text = await WaitForPromptAsync(timeout ?? TimeSpan.FromSeconds(30), ct);
        // The first line is the echoed command (readline redraws it char by char; only the last state matters).
        var newline = text.IndexOf('\n', StringComparison.Ordinal);
        return newline < 0 ? "" : text[(newline + 1)..].Trim();
    }

    /// <summary>Repeats <paramref name="command"/> until its output satisfies <paramref name="done"/>.</summary>
    public async Task<string> PollAsync(string command, Func<string, bool> done, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var output = await CommandAsync(command, ct);
            if (done(output))
            {
                return output;
            }

            if (deadline.Elapsed > timeout)
            {
                throw new TimeoutException($"'{command}' did not reach the expected state in {timeout}; last output:\n{output}\nstderr:\n{Stderr}");
            }

            // Polling an external process's state: the monitor has no event for it (QMP has; this is the HMP driver).
            await Task.Delay(50, ct);
        }
    }

    private async Task<string> WaitForPromptAsync(TimeSpan timeout, CancellationToken ct)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                var all = _stdout.ToString();
                var prompt = all.IndexOf("(qemu) ", _scanFrom, StringComparison.Ordinal);
                if (prompt >= 0)
                {
                    var text = all[_scanFrom..prompt];
                    _scanFrom = prompt + "(qemu) ".Length;
                    return Clean(text);
                }

                if (_exited)
                {
                    throw new InvalidOperationException(
                        $"QEMU exited with code {_process.ExitCode}; stdout:\n{Clean(all[_scanFrom..])}\nstderr:\n{_process.Stderr}");
                }

                changed = _changed.Task;
            }

            try
            {
                await changed.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"No HMP prompt within {timeout}; stderr:\n{Stderr}");
            }
        }
    }

    private void OnStdout(string text)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            _stdout.Append(text);
            changed = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    /// <summary>QEMU exited and its output was read to the end: wake the waiters so they report it.</summary>
    private async Task SignalExitAsync()
    {
        await _process.Exited;
        TaskCompletionSource changed;
        lock (_lock)
        {
            _exited = true;
            changed = _changed;
        }
        changed.TrySetResult();
    }

    /// <summary>Drops ANSI escape sequences and carriage returns of HMP's readline echo.</summary>
    private static string Clean(string text) => Escapes().Replace(text, "").Replace("\r", "", StringComparison.Ordinal);

    [GeneratedRegex(@"\x1b\[[0-9;]*[A-Za-z]")]
    private static partial Regex Escapes();

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
