using System.ComponentModel;
using System.Runtime.InteropServices;

namespace StreamClone.Store;

/// <summary>
/// Bytes an unprivileged writer may still use on the filesystem holding a path: statvfs(3)'s
/// f_bavail × f_frsize (f_bfree would count the blocks reserved for root, which a full disk
/// refuses to us anyway). DriveInfo answers for mount points, not arbitrary paths, hence libc.
/// </summary>
internal static partial class FreeSpace
{
    /// <summary><c>struct statvfs</c> from &lt;sys/statvfs.h&gt;, LP64 Linux (x86_64 and aarch64): eleven 8-byte fields, then int __f_spare[6].</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct StatVfs
    {
        public ulong BlockSize;
        public ulong FragmentSize;
        public ulong Blocks;
        public ulong BlocksFree;
        public ulong BlocksAvailable;
        public ulong Files;
        public ulong FilesFree;
        public ulong FilesAvailable;
        public ulong FileSystemId;
        public ulong Flags;
        public ulong NameMax;
        public long Spare0;
        public long Spare1;
        public long Spare2;
    }

    [LibraryImport("libc", EntryPoint = "statvfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int StatVfsNative(string path, out StatVfs buffer);

    /// <summary>Available bytes at <paramref name="path"/>; <see cref="IOException"/> when statvfs fails.</summary>
    public static long Available(string path)
    {
        if (StatVfsNative(path, out var s) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"Cannot query free space of '{path}': {new Win32Exception(errno).Message}");
        }
        var bytes = (UInt128)s.BlocksAvailable * s.FragmentSize;
        return bytes > long.MaxValue ? long.MaxValue : (long)bytes;
    }
}
