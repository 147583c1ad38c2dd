using System.Diagnostics;
using System.Text;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>The real CLI (streamclone.dll, copied beside the tests by the project reference) as a child process.</summary>
public sealed class StreamCloneProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private StreamCloneProcess(Process process) => _process = process;

    public static StreamCloneProcess Start(params string[] args) => Start(new Dictionary<string, string>(), args);

    /// <summary>Starts the CLI with <paramref name="environment"/> set on top of the test's own.</summary>
    public static StreamCloneProcess Start(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "streamclone.dll"));
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        var process = new Process { StartInfo = info };
        var child = new StreamCloneProcess(process);
        process.OutputDataReceived += (_, e) => { lock (child._stdout) { child._stdout.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (child._stderr) { child._stderr.AppendLine(e.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public string Stdout { get { lock (_stdout) { return _stdout.ToString(); } } }

    public string Stderr { get { lock (_stderr) { return _stderr.ToString(); } } }

    /// <summary>The non-empty lines the child wrote to stderr.</summary>
    public string[] StderrLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>
    /// The lines that report a failure: the CLI's own ("streamclone: …") and log lines at fail or crit
    /// level. A command that failed for one cause shows exactly one (Host/Program.cs prints its line
    /// only when no session logged the cause already).
    /// </summary>
    public string[] FailureLines => [.. StderrLines.Where(l =>
        l.StartsWith("streamclone: ", StringComparison.Ordinal) || l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal))];

    public string LastLine => Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";

    public bool HasExited => _process.HasExited;

    public int ProcessId => _process.Id;

    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
            throw new TimeoutException($"streamclone did not exit within {timeout}. stderr:\n{Stderr}");
        }
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>SIGKILL: no cleanup of any kind runs in the child.</summary>
    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit();
            }
        }
        catch (InvalidOperationException)
        {
        }
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        _process.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Starts `source` on an ephemeral port and returns once it listens.</summary>
    public static async Task<(StreamCloneProcess Process, int Port)> StartSourceAsync(string workDir, params string[] args)
    {
        var portFile = Path.Combine(workDir, $"port-{Guid.NewGuid():N}");
        var process = Start(["source", "--listen", "127.0.0.1:0", "--port-file", portFile, "--json", .. args]);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            if (File.Exists(portFile))
            {
                return (process, int.Parse(await File.ReadAllTextAsync(portFile)));
            }
            if (process.HasExited)
            {
                throw new InvalidOperationException($"source exited early:\n{process.Stderr}");
            }
            await Task.Delay(20);
        }
        await process.DisposeAsync();
        throw new TimeoutException("source did not listen within 60 s");
    }
}
