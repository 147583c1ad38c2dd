using System.Runtime.InteropServices;
using StreamClone.Source.Live;

namespace StreamClone.Tests.Unit.Live;

/// <summary>
/// Issue 6, finding 8 (live part): the live source's work dir holds the VM's RAM pages, old disk blocks and the
/// sockets QEMU connects to. The default one is new, unpredictable and 0700; a given one that another user owns,
/// that others may write, or that is a symlink is refused with one line.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public partial class LiveWorkDirectoryTests : IDisposable
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly string _root = Directory.CreateTempSubdirectory("sc-workdir-test-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void The_default_work_dir_is_new_unpredictable_private_and_removed_afterwards()
    {
        string first;
        using (var a = LiveWorkDirectory.CreateDefault())
        using (var b = LiveWorkDirectory.CreateDefault())
        {
            first = a.Path;
            Assert.NotEqual(a.Path, b.Path);
            Assert.StartsWith(Path.Combine(Path.GetTempPath(), "streamclone-live-"), a.Path, StringComparison.Ordinal);
            Assert.Equal(OwnerOnly, File.GetUnixFileMode(a.Path));
        }
        Assert.False(Directory.Exists(first));
    }

    [Fact]
    public void A_missing_work_dir_is_created_private_and_removed_afterwards()
    {
        var path = Path.Combine(_root, "live");
        using (var dir = LiveWorkDirectory.Claim(path))
        {
            Assert.Equal(OwnerOnly, File.GetUnixFileMode(path));
        }
        Assert.False(Directory.Exists(path));
    }

    [Fact]
    public void An_existing_private_work_dir_of_ours_is_used_and_kept()
    {
        var path = Path.Combine(_root, "mine");
        Directory.CreateDirectory(path, OwnerOnly);
        using (LiveWorkDirectory.Claim(path))
        {
        }
        Assert.True(Directory.Exists(path));
    }

    [Fact]
    public void A_world_writable_work_dir_is_refused()
    {
        var path = Path.Combine(_root, "open");
        Directory.CreateDirectory(path);
        File.SetUnixFileMode(path, (UnixFileMode)0b111_111_111);
        var error = Assert.Throws<UnauthorizedAccessException>(() => LiveWorkDirectory.Claim(path));
        Assert.Contains("writable by group or others (mode 777)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_work_dir_owned_by_another_user_is_refused()
    {
        var path = Path.Combine(_root, "theirs");
        Directory.CreateDirectory(path, OwnerOnly);
        // uid 65534 is "nobody"; changing the owner needs root, which the test suite runs as (apt, mount, QEMU).
        Assert.True(Chown(path, 65534, 65534) == 0, $"chown: {Marshal.GetLastPInvokeError()}");
        var error = Assert.Throws<UnauthorizedAccessException>(() => LiveWorkDirectory.Claim(path));
        Assert.Contains("is owned by uid 65534, not by us", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_symlink_as_work_dir_is_refused()
    {
        var target = Path.Combine(_root, "target");
        Directory.CreateDirectory(target, OwnerOnly);
        var link = Path.Combine(_root, "link");
        Directory.CreateSymbolicLink(link, target);
        var error = Assert.Throws<UnauthorizedAccessException>(() => LiveWorkDirectory.Claim(link));
        Assert.Contains("symbolic link", error.Message, StringComparison.Ordinal);
    }

    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Chown(string path, uint owner, uint group);
}
