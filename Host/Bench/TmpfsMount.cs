using System.Globalization;
using StreamClone.Processes;

namespace StreamClone.Host.Bench;

/// <summary>
/// A small tmpfs (needs root) standing in for a full disk: mounted over an empty directory, resized
/// with a remount (the operator making room), always unmounted on dispose.
/// </summary>
internal sealed class TmpfsMount : IAsyncDisposable
{
    private TmpfsMount(string path) => Path = path;

    public string Path { get; }

    public static bool Available => Environment.IsPrivilegedProcess && OperatingSystem.IsLinux();

    public static async Task<TmpfsMount> MountAsync(string path, long bytes, CancellationToken ct)
    {
        Directory.CreateDirectory(path);
        // mode=0700: the store holds VM state.
        await RunAsync(["mount", "-t", "tmpfs", "-o", Options(bytes) + ",mode=0700", "tmpfs", path], ct);
        return new TmpfsMount(path);
    }

    public Task ResizeAsync(long bytes, CancellationToken ct) => RunAsync(["mount", "-o", "remount," + Options(bytes), Path], ct);

    private static string Options(long bytes) => "size=" + bytes.ToString(CultureInfo.InvariantCulture);

    private static async Task RunAsync(string[] command, CancellationToken ct)
    {
        var (tool, args) = (command[0], command[1..]);
        var result = await ProcessRunner.RunAsync(new(tool, args), ct, check: false);
        if (result.ExitCode != 0)
        {
            // IOException: the dispose path falls back to a lazy unmount on it.
            throw new IOException($"{tool} {string.Join(' ', args)} failed: {result.Stderr.Trim().ReplaceLineEndings(" | ")}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await RunAsync(["umount", Path], CancellationToken.None);
        }
        catch (IOException)
        {
            // Still busy (a process we could not kill holds a file): detach it now, freed when released.
            await RunAsync(["umount", "-l", Path], CancellationToken.None);
        }
    }
}
