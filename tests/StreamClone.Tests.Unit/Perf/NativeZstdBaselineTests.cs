using StreamClone.Perf;

namespace StreamClone.Tests.Unit.Perf;

public sealed class NativeZstdBaselineTests : IDisposable
{
    private readonly TempDir _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

    /// <summary>Pids whose parent is this test process (the pipeline's bash shells would be here).</summary>
    private static string[] ChildProcesses()
    {
        var self = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Directory.GetDirectories("/proc")
            .Select(d => (Dir: d, Stat: TryRead(Path.Combine(d, "stat"))))
            // stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
            .Where(p => p.Stat is not null && p.Stat[(p.Stat.LastIndexOf(')') + 2)..].Split(' ')[1] == self)
            .Select(p => Path.GetFileName(p.Dir))
            .Order()
            .ToArray();

        static string? TryRead(string path)
        {
            try
            {
                return File.ReadAllText(path);
            }
            catch (IOException)
            {
                return null;
            }
            catch (UnauthorizedAccessException)
            {
                return null;
            }
        }
    }

    [Fact]
    public async Task Small_run_over_loopback_reproduces_the_input()
    {
        // May install zstd and socat with apt-get the first time.
        var input = _dir.File("in.img");
        await ImageGenerator.GenerateAsync(input, 16 << 20, ImageProfile.Memory, seed: 5, Ct);

        var result = await NativeZstdBaseline.RunAsync(input, level: 1, threads: 2, workDirectory: _dir.Path, ct: Ct);

        Assert.True(result.Identical);
        Assert.Equal(1, result.Level);
        Assert.Equal(16L << 20, result.InputBytes);
        // Without dedup zstd still drops the zero pages: well under the image, over a quarter of it.
        Assert.InRange(result.WireBytes, 4L << 20, 12L << 20);
        Assert.True(result.Seconds > 0 && result.Mbps > 0);
        // The received copy and the counter file are cleaned up.
        Assert.Equal([input], Directory.GetFileSystemEntries(_dir.Path));
    }

    [Fact]
    public async Task Cancelling_kills_the_pipeline_and_removes_its_files()
    {
        var input = _dir.File("in.img");
        await ImageGenerator.GenerateAsync(input, 64 << 20, ImageProfile.Memory, seed: 5, Ct);
        ToolInstaller.EnsureAptPackages("zstd", "socat");
        var before = ChildProcesses();
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(TimeSpan.FromMilliseconds(50));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => NativeZstdBaseline.RunAsync(input, workDirectory: _dir.Path, ct: cts.Token));

        Assert.Equal([input], Directory.GetFileSystemEntries(_dir.Path));
        Assert.Equal(before, ChildProcesses());
    }

    [Fact]
    public void Installer_is_a_no_op_for_present_commands()
    {
        ToolInstaller.EnsureAptPackages("bash");

        Assert.NotNull(ToolInstaller.FindOnPath("bash"));
        Assert.Null(ToolInstaller.FindOnPath("no-such-command-streamclone"));
    }
}
