using System.Diagnostics;
using System.Reflection;
using System.Text;

namespace StreamClone.Host.Bench;

/// <summary>Runs this same program as a separate process (source, sink), so benchmarks and the demo measure real processes over real sockets.</summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();

    private ChildProcess(Process process) => _process = process;

    public string Name { get; private init; } = "";

    public static ChildProcess Start(string name, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var self = Environment.ProcessPath!;
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            // Started as `dotnet streamclone.dll`: start children the same way.
            info.FileName = self;
            info.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        }
        else
        {
            info.FileName = self;
        }
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var child = new ChildProcess(process) { Name = name };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (child._stdout)
                {
                    child._stdout.AppendLine(e.Data);
                }
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                lock (child._stderr)
                {
                    child._stderr.AppendLine(e.Data);
                }
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Exit code once <see cref="HasExited"/>; 137 after a SIGKILL.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Completes when the process exited and its output was read to the end.</summary>
    public async Task ExitedAsync(CancellationToken ct)
    {
        await _process.WaitForExitAsync(ct);
        _process.WaitForExit();
    }

    public string StandardOutput
    {
        get
        {
            lock (_stdout)
            {
                return _stdout.ToString();
            }
        }
    }

    public string StandardError
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>The last non-empty stdout line: where --json commands print their summary.</summary>
    public string LastLine => StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "";

    public async Task<int> WaitAsync(TimeSpan timeout, CancellationToken ct = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            Kill();
            throw new TimeoutException($"{Name} did not finish within {timeout.TotalSeconds:F0} s. stderr:\n{StandardError}");
        }
        // Drain the async readers: WaitForExitAsync returns before the last lines are delivered otherwise.
        _process.WaitForExit();
        return _process.ExitCode;
    }

    public void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
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

    /// <summary>Waits for a child to write its listening port (source --port-file).</summary>
    public static async Task<int> WaitForPortFileAsync(string path, ChildProcess owner, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (File.Exists(path) && int.TryParse(await File.ReadAllTextAsync(path), out var port))
            {
                return port;
            }
            if (owner.HasExited)
            {
                throw new InvalidOperationException($"{owner.Name} exited before listening:\n{owner.StandardError}");
            }
            await Task.Delay(20);
        }
        throw new TimeoutException($"{owner.Name} did not start listening within {timeout.TotalSeconds:F0} s:\n{owner.StandardError}");
    }
}
