using System.Runtime.InteropServices;
using StreamClone.Shared;

namespace StreamClone.Source.Live;

/// <summary>
/// The live source's work directory: it holds the VM's RAM pages, the disks' scratch images (old disk blocks)
/// and the sockets QEMU connects to, so nobody else may read it, write it or have placed it for us. The default
/// is a new directory with an unpredictable name, created exclusively with mode 0700 (mkdtemp semantics); a
/// directory the user names is created 0700 when missing, and refused when it exists but is not a real
/// directory owned by us, or is writable by group or others.
/// </summary>
public sealed partial class LiveWorkDirectory : IDisposable
{
    private readonly bool _created;

    private LiveWorkDirectory(string path, bool created)
    {
        Path = path;
        _created = created;
    }

    public string Path { get; }

    /// <summary>A new directory under the system temp dir (Directory.CreateTempSubdirectory: mkdtemp(3), mode 0700); removed on dispose.</summary>
    public static LiveWorkDirectory CreateDefault() =>
        new(Directory.CreateTempSubdirectory("streamclone-live-").FullName, created: true);

    /// <summary>
    /// The user's <paramref name="path"/>: created (0700) when missing and then removed on dispose; otherwise
    /// checked and kept. Throws <see cref="UnauthorizedAccessException"/> with one line saying why it is refused.
    /// </summary>
    public static LiveWorkDirectory Claim(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new PlatformNotSupportedException("a live source runs beside QEMU on Linux");
        }
        var full = System.IO.Path.GetFullPath(path);
        if (!PathExists(full))
        {
            try
            {
                Directory.CreateDirectory(full, VmStateModes.Directory);
                return new LiveWorkDirectory(full, created: true);
            }
            catch (IOException) when (PathExists(full))
            {
                // Someone made it between our look and our mkdir: check it like any existing one.
            }
        }
        var info = Stat(full);
        if (info.IsSymlink)
        {
            throw new UnauthorizedAccessException($"work dir {full} is a symbolic link; give the real directory");
        }
        if (!info.IsDirectory)
        {
            throw new UnauthorizedAccessException($"work dir {full} exists and is not a directory");
        }
        var me = GetEffectiveUserId();
        if (info.Uid != me)
        {
            throw new UnauthorizedAccessException($"work dir {full} is owned by uid {info.Uid}, not by us (uid {me}): refusing it (it would hold the VM's memory and disk blocks)");
        }
        if ((info.Mode & 0b000_010_010) != 0)
        {
            throw new UnauthorizedAccessException($"work dir {full} is writable by group or others (mode {Convert.ToString(info.Mode & 0xFFF, 8)}): refusing it; chmod 700 it or give another");
        }
        return new LiveWorkDirectory(full, created: false);
    }

    private static bool PathExists(string path) => Directory.Exists(path) || File.Exists(path) || new FileInfo(path).LinkTarget is not null;

    /// <summary>Removes the directory if we created it (what is in it is ours); a user's existing one stays.</summary>
    public void Dispose()
    {
        if (_created)
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Best effort at exit; the directory is 0700 and ours.
            }
        }
    }

    private readonly record struct StatInfo(uint Uid, uint Mode, bool IsDirectory, bool IsSymlink);

    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxBasicStats = 0x7FF;
    private const uint TypeMask = 0xF000; // S_IFMT
    private const uint TypeDirectory = 0x4000; // S_IFDIR
    private const uint TypeSymlink = 0xA000; // S_IFLNK

    /// <summary>
    /// statx(2) without following a final symlink. struct statx has the same layout on every Linux architecture
    /// (include/uapi/linux/stat.h): stx_uid at byte 20, stx_mode (u16) at 28; 256 bytes in all.
    /// </summary>
    private static unsafe StatInfo Stat(string path)
    {
        var buffer = stackalloc byte[256];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxBasicStats, buffer) != 0)
        {
            throw new IOException($"work dir {path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        var uid = *(uint*)(buffer + 20);
        uint mode = *(ushort*)(buffer + 28);
        return new StatInfo(uid, mode, (mode & TypeMask) == TypeDirectory, (mode & TypeMask) == TypeSymlink);
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirFd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEffectiveUserId();
}
