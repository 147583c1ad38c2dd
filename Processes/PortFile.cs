namespace StreamClone.Processes;

/// <summary>The port a server child (source --listen H:0 --port-file F) writes once it listens.</summary>
public static class PortFile
{
    /// <summary>Waits for <paramref name="owner"/> to write <paramref name="path"/> (written to a temporary name and
    /// renamed, so it is whole when it appears); fails with the owner's stderr if it exits first.</summary>
    public static async Task<int> WaitAsync(string path, RunningProcess owner, TimeSpan timeout, CancellationToken ct = default)
    {
        var port = 0;
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        try
        {
            await FileWatch.UntilAsync(directory, () => TryRead(path, out port), timeout,
                () => $"{owner.Name} did not write its port to {path}", owner.Exited, ct);
        }
        catch (InvalidOperationException)
        {
            throw new ProcessFailedException($"{owner.Name} exited with {owner.ExitCode} before listening: {owner.OutputTail()}") { ExitCode = owner.ExitCode };
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; stderr: {owner.OutputTail()}", e);
        }
        return port;
    }

    private static bool TryRead(string path, out int port)
    {
        port = 0;
        try
        {
            return int.TryParse(File.ReadAllText(path), out port) && port > 0;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return false;
        }
    }
}
