using StreamClone.Processes;

namespace StreamClone.Perf;

/// <summary>
/// Makes sure Debian packages whose command has the package's name (zstd, socat) are installed.
/// Idempotent: a command found on PATH means nothing to do. Needs root and apt-get; on failure
/// the exception carries apt's last output.
/// </summary>
public static class ToolInstaller
{
    private static readonly Lock Gate = new();

    public static void EnsureAptPackages(params string[] packages)
    {
        // Serialised: two tests asking at once would otherwise race on dpkg's lock.
        lock (Gate)
        {
            var missing = packages.Where(p => ProcessRunner.FindOnPath(p) is null).ToArray();
            if (missing.Length == 0)
            {
                return;
            }
            var install = "install -y --no-install-recommends " + string.Join(' ', missing);
            var (code, output) = RunAptGet(install);
            if (code != 0)
            {
                // A fresh container has empty package lists; refresh once and retry.
                var (updateCode, updateOutput) = RunAptGet("update");
                (code, output) = updateCode == 0 ? RunAptGet(install) : (updateCode, updateOutput);
            }
            var stillMissing = missing.Where(p => ProcessRunner.FindOnPath(p) is null).ToArray();
            if (code != 0 || stillMissing.Length != 0)
            {
                throw new InvalidOperationException(
                    $"could not install {string.Join(", ", missing)} with apt-get (exit {code}; install them by hand: " +
                    $"apt-get install -y {string.Join(' ', missing)}). apt-get said: {Tail(output)}");
            }
        }
    }

    /// <summary>Full path of an executable on PATH, or null.</summary>
    public static string? FindOnPath(string command) => ProcessRunner.FindOnPath(command);

    private static (int ExitCode, string Output) RunAptGet(string arguments)
    {
        var aptGet = new ProcessCommand("apt-get", arguments.Split(' '))
        {
            Environment = new Dictionary<string, string?> { ["DEBIAN_FRONTEND"] = "noninteractive" },
        };
        try
        {
            // Blocking on purpose: callers are synchronous set-up steps, serialised by Gate.
            var result = ProcessRunner.RunAsync(aptGet, CancellationToken.None, check: false).GetAwaiter().GetResult();
            return (result.ExitCode, result.Stdout + result.Stderr);
        }
        catch (ProcessFailedException ex)
        {
            return (-1, ex.Message);
        }
    }

    private static string Tail(string text) => text.Length <= 800 ? text.Trim() : "…" + text[^800..].Trim();
}
