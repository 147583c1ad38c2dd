namespace StreamClone.Tests.Fuzz;

/// <summary>
/// Where targets keep their files (RAM copies, stores, journals). The runner gives each child process a
/// directory of its own through <see cref="Variable"/> and removes it when the child has exited, whichever
/// way: a child that crashed, or that was killed on a hang, cannot clean up after itself, and its files
/// would otherwise stay in /dev/shm (RAM) until reboot.
/// </summary>
internal static class FuzzScratch
{
    public const string Variable = "STREAMCLONE_FUZZ_SCRATCH";

    /// <summary>A fresh directory path for one target instance (not created).</summary>
    public static string For(string target) =>
        Path.Combine(Root(), $"sc-fuzz-{target}-{Environment.ProcessId}-{Guid.NewGuid():N}");

    /// <summary>The directory a child's targets use: the runner's choice, else RAM (/dev/shm) or the temp dir.</summary>
    public static string Root() =>
        Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } given ? given
        : Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();

    /// <summary>Creates the directory for one child run (0700: the targets' files are test data, but ours).</summary>
    public static string CreateForChild(string target)
    {
        var root = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        var path = Path.Combine(root, $"sc-fuzz-child-{target}-{Guid.NewGuid():N}");
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
        }
        else
        {
            Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        return path;
    }

    public static void Remove(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
            // Gone already, or busy: nothing more to do from here.
        }
    }
}
