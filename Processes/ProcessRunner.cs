namespace StreamClone.Processes;

/// <summary>What a program printed and how it ended.</summary>
public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr);

/// <summary>Runs a program to completion (qemu-img, apt-get, gcc, mount, du …) on top of <see cref="RunningProcess"/>.</summary>
public static class ProcessRunner
{
    /// <summary>
    /// Runs <paramref name="command"/> to its end and returns what it printed. With <paramref name="check"/> a non-zero
    /// exit is a <see cref="ProcessFailedException"/>: one line with the command and the tail of its stderr. Cancelling
    /// kills the program (and what it started).
    /// </summary>
    public static async Task<ProcessResult> RunAsync(ProcessCommand command, CancellationToken ct, bool check = true)
    {
        await using var process = RunningProcess.Start(command);
        int exitCode;
        try
        {
            exitCode = await process.Exited.WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw;
        }
        if (check && exitCode != 0)
        {
            throw process.Failure();
        }
        return new ProcessResult(exitCode, process.Stdout, process.Stderr);
    }

    /// <summary>Full path of an executable on PATH (plus the sbin directories a non-login root shell may lack), or null.</summary>
    public static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/sbin"])
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);
}
