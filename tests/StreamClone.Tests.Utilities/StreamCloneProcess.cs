using StreamClone.Processes;

namespace StreamClone.Tests.Utilities;

/// <summary>The real CLI (streamclone.dll, copied beside the tests by the project reference) as a child process.</summary>
public static class StreamCloneProcess
{
    /// <summary>How long a source may take to bind its port (a cold JIT on a loaded two-core machine).</summary>
    private static readonly TimeSpan ListenTimeout = TimeSpan.FromSeconds(60);

    public static RunningProcess Start(params string[] args) => Start(new Dictionary<string, string>(), args);

    /// <summary>Starts the CLI with <paramref name="environment"/> set on top of the test's own.</summary>
    public static RunningProcess Start(IReadOnlyDictionary<string, string> environment, params string[] args) =>
        RunningProcess.Start(new ProcessCommand("dotnet", [Path.Combine(AppContext.BaseDirectory, "streamclone.dll"), .. args])
        {
            Name = args.Length > 0 ? $"streamclone {args[0]}" : "streamclone",
            Environment = environment.ToDictionary(e => e.Key, e => (string?)e.Value),
        });

    /// <summary>Starts `source` on an ephemeral port and returns once it listens (its port file appeared).</summary>
    public static async Task<(RunningProcess Process, int Port)> StartSourceAsync(string workDir, params string[] args)
    {
        var portFile = Path.Combine(workDir, $"port-{Guid.NewGuid():N}");
        var process = Start(["source", "--listen", "127.0.0.1:0", "--port-file", portFile, "--json", .. args]);
        try
        {
            return (process, await PortFile.WaitAsync(portFile, process, ListenTimeout));
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    extension(RunningProcess process)
    {
        /// <summary>
        /// The lines that report a failure: the CLI's own ("streamclone: …") and log lines at fail or crit
        /// level. A command that failed for one cause shows exactly one (Host/Program.cs prints its line
        /// only when no session logged the cause already).
        /// </summary>
        public string[] FailureLines => [.. process.StderrLines.Where(l =>
            l.StartsWith("streamclone: ", StringComparison.Ordinal) || l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal))];
    }
}
