using System.Text.Json;

namespace StreamClone.Tests.Integration.Topology;

/// <summary>perf/topology.sh as the tests call it: the CLI beside the tests as the node binary, a unique topology name per call.</summary>
internal static class TopologyScript
{
    public static string Path { get; } = Find();

    /// <summary>The node command: the CLI the test project copied beside itself (no launcher build in each namespace).</summary>
    public static string Bin => $"dotnet {System.IO.Path.Combine(AppContext.BaseDirectory, "streamclone.dll")}";

    /// <summary>A topology name no other run uses ([a-z0-9-], at most 16 characters).</summary>
    public static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..16];

    public static Task<ProcessResult> RunAsync(IEnumerable<string> args, CancellationToken ct) =>
        ProcessRunner.RunAsync(new ProcessCommand("bash", [Path, .. args])
        {
            Name = "topology.sh",
            Environment = new Dictionary<string, string?> { ["STREAMCLONE_BIN"] = Bin },
        }, ct, check: false);

    public static JsonElement ReadJson(string file) => JsonDocument.Parse(File.ReadAllText(file)).RootElement;

    /// <summary>Namespaces of a run (sc-RUNID-…) still present.</summary>
    public static async Task<string[]> NamespacesOfAsync(string runId, CancellationToken ct)
    {
        var list = await ProcessRunner.RunAsync(new ProcessCommand("ip", ["netns", "list"]), ct);
        return [.. list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')[0]).Where(n => n.StartsWith($"sc-{runId}-", StringComparison.Ordinal))];
    }

    /// <summary>Processes whose command line names <paramref name="text"/> (a run directory: every node's store and options live under it).</summary>
    public static int[] ProcessesNaming(string text)
    {
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(System.IO.Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }
            try
            {
                if (File.ReadAllText(System.IO.Path.Combine(dir, "cmdline")).Contains(text, StringComparison.Ordinal))
                {
                    found.Add(pid);
                }
            }
            catch (IOException)
            {
                // Gone while we looked.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        return [.. found];
    }

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var script = System.IO.Path.Combine(dir.FullName, "perf", "topology.sh");
            if (File.Exists(script))
            {
                return script;
            }
        }
        throw new FileNotFoundException("perf/topology.sh not found above the test binaries");
    }
}
