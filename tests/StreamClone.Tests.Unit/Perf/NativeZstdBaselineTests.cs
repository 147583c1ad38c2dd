using StreamClone.Perf;

namespace StreamClone.Tests.Unit.Perf;

public sealed class NativeZstdBaselineTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => _dir.Dispose();

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
    public void Installer_is_a_no_op_for_present_commands()
    {
        ToolInstaller.EnsureAptPackages("bash");

        Assert.NotNull(ToolInstaller.FindOnPath("bash"));
        Assert.Null(ToolInstaller.FindOnPath("no-such-command-streamclone"));
    }
}
