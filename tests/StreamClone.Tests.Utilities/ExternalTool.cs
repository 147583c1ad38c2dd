using StreamClone.Processes;

namespace StreamClone.Tests.Utilities;

/// <summary>Runs a system tool a test needs (mount, kill, cp, chmod, qemu-img) to its end; a failure is a
/// <see cref="ProcessFailedException"/> naming the command and quoting its stderr.</summary>
public static class ExternalTool
{
    // Not the test's token: an unmount or a kill -CONT in a finally block must run to the end.
    public static Task<ProcessResult> RunAsync(string program, params string[] args) =>
        ProcessRunner.RunAsync(new(program, args), CancellationToken.None);
}
