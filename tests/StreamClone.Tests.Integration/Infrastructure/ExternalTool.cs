using System.Diagnostics;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>Runs a system tool a test needs (mount, kill, qemu-img) and fails the test with its stderr when it fails.</summary>
public static class ExternalTool
{
    public static async Task RunAsync(string program, params string[] args)
    {
        var info = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        // Not the test's token: an unmount or a kill -CONT in a finally block must run to the end.
        await process.WaitForExitAsync(CancellationToken.None);
        await stdout;
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', args)}: {await stderr}");
    }
}
