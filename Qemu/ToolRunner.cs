using System.Diagnostics;
using System.Text;

namespace StreamClone.Qemu;

/// <summary>Runs a host tool to completion, capturing its output; a non-zero exit becomes an exception naming the command.</summary>
internal static class ToolRunner
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr);

    public static async Task<Result> RunAsync(string file, IEnumerable<string> args, CancellationToken ct,
        bool check = true, string? workingDirectory = null)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        if (workingDirectory is not null)
            psi.WorkingDirectory = workingDirectory;
        // apt-get must never stop to ask.
        psi.Environment["DEBIAN_FRONTEND"] = "noninteractive";

        using var process = new Process { StartInfo = psi };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"cannot run '{file}': {e.Message}", e);
        }
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        try
        {
            await process.WaitForExitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            TryKill(process);
            throw;
        }
        var result = new Result(process.ExitCode, await stdout, await stderr);
        if (check && result.ExitCode != 0)
            throw new InvalidOperationException(
                $"'{Describe(file, psi.ArgumentList)}' exited with {result.ExitCode}: {Tail(result.StdErr + result.StdOut)}");
        return result;
    }

    /// <summary>Full path of an executable on PATH (plus the sbin directories a non-login root shell may
    /// lack), or null.</summary>
    public static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/sbin"])
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    public static void TryKill(Process process)
    {
        try
        {
            if (!process.HasExited)
                process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // Already gone or not ours; nothing more we can do.
        }
    }

    private static string Describe(string file, IEnumerable<string> args)
    {
        var sb = new StringBuilder(file);
        foreach (var a in args)
            sb.Append(' ').Append(a.Contains(' ') ? $"\"{a}\"" : a);
        return sb.ToString();
    }

    internal static string Tail(string text, int max = 2000)
    {
        text = text.Trim();
        return text.Length <= max ? text : "…" + text[^max..];
    }
}
