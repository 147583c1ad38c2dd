using StreamClone.TestGuest;

namespace StreamClone.Tests.Integration.Qemu;

[Collection(QemuCollection.Name)]
public class GuestBuilderTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_build_is_complete_and_a_second_build_changes_nothing()
    {
        var dir = Directory.CreateTempSubdirectory("sc-guest-").FullName;
        try
        {
            var options = new GuestBuildOptions { OutDir = dir, DiskSizeMiB = 16 };
            var image = await GuestBuilder.BuildAsync(options, ct: Ct);

            Assert.StartsWith(dir, image.KernelPath, StringComparison.Ordinal);
            Assert.Equal(16L << 20, new FileInfo(image.DiskPath).Length);
            var listing = await Run("bash", "-c", $"zcat '{image.InitrdPath}' | cpio -t --quiet");
            foreach (var entry in new[] { "init", "workload", "bin/busybox", "modules.order", "lib/modules/virtio_blk.ko", "lib/modules/virtio_pci.ko" })
                Assert.Contains(entry, listing.Split('\n'));
            var fsType = await Run("blkid", "-o", "value", "-s", "TYPE", image.DiskPath);
            Assert.Equal("ext4", fsType.Trim());

            var stamps = new[] { image.KernelPath, image.InitrdPath, image.DiskPath }.Select(File.GetLastWriteTimeUtc).ToList();
            var again = await GuestBuilder.BuildAsync(options, ct: Ct);

            Assert.Equal(image, again);
            Assert.Equal(stamps, new[] { again.KernelPath, again.InitrdPath, again.DiskPath }.Select(File.GetLastWriteTimeUtc));
            Assert.Equal(image, GuestBuilder.Open(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<string> Run(string file, params string[] args)
    {
        var result = await ProcessRunner.RunAsync(new(file, args), Ct, check: false);
        Assert.Equal(0, result.ExitCode);
        return result.Stdout;
    }
}
