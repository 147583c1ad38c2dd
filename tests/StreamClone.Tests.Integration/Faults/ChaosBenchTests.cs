using System.Text.Json;

namespace StreamClone.Tests.Integration.Faults;

/// <summary>`bench chaos` end to end: real source and sink processes, the fault proxy, recovery, the byte-for-byte check.</summary>
public class ChaosBenchTests
{
    [Fact]
    public async Task Chaos_runs_end_identical_or_in_a_clear_failure_never_in_wrong_bytes_or_a_hang()
    {
        using var dir = new TempDir();
        // Three runs of the first shuffled round of seed 7, on a small image so they take seconds each.
        await using var bench = StreamCloneProcess.Start("bench", "chaos", "--runs", "3", "--seed", "7", "--size", "16M", "--json", "--verbose", "--work-dir", dir.File("work"));
        var exit = await bench.WaitAsync(TimeSpan.FromMinutes(12));

        using var report = JsonDocument.Parse(bench.LastLine);
        var root = report.RootElement;
        var why = $"stdout:\n{bench.Stdout}\nstderr:\n{bench.Stderr}";
        Assert.Equal(3, root.GetProperty("runs").GetInt32());
        Assert.True(root.GetProperty("wrong_bytes").GetInt32() == 0, why);
        Assert.True(root.GetProperty("hangs").GetInt32() == 0, why);
        Assert.True(root.GetProperty("identical").GetInt32() + root.GetProperty("clear_failures").GetInt32() == 3, why);
        Assert.Equal(3, root.GetProperty("details").GetArrayLength());
        Assert.Equal(0, exit);
        // Every process and mount is gone with the bench: nothing of the work dir stays mounted.
        Assert.DoesNotContain(dir.Path, await File.ReadAllTextAsync("/proc/mounts"), StringComparison.Ordinal);
    }
}
