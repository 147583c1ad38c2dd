using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using StreamClone.Shared;

namespace StreamClone.Store;

/// <summary>
/// An IO failure of the chunk store, naming the file and the operation. <see cref="IsDiskFull"/> is
/// set for ENOSPC (errno 28) and Windows' disk-full codes, which the sink reports as such instead of
/// a generic store failure: the operator's fix (free space, then resume) is different.
/// </summary>
public sealed class ChunkStoreIOException : IOException
{
    public ChunkStoreIOException(string message, string path, bool isDiskFull, Exception inner)
        : base(message, inner)
    {
        FilePath = path;
        IsDiskFull = isDiskFull;
        HResult = inner.HResult;
    }

    public ChunkStoreIOException()
    {
        FilePath = "";
    }

    public ChunkStoreIOException(string message) : base(message)
    {
        FilePath = "";
    }

    public ChunkStoreIOException(string message, Exception innerException) : base(message, innerException)
    {
        FilePath = "";
    }

    public string FilePath { get; }

    public bool IsDiskFull { get; }
}

/// <summary>Positional IO and durability primitives shared by the store's files.</summary>
internal static partial class StoreIO
{
    private const int Enospc = 28;
    private const int WindowsDiskFull = 112;
    private const int WindowsHandleDiskFull = 39;

    public static bool IsDiskFull(IOException exception) =>
        exception.HResult == Enospc
        || (exception.HResult & 0xFFFF) is WindowsDiskFull or WindowsHandleDiskFull;

    public static ChunkStoreIOException Wrap(IOException exception, string path, string operation)
    {
        if (exception is ChunkStoreIOException already)
        {
            return already;
        }
        var full = IsDiskFull(exception);
        var message = full
            ? $"Chunk store: disk full (ENOSPC) while {operation} '{path}'. Free space and resume; chunks already stored are kept."
            : $"Chunk store: {operation} '{path}' failed: {exception.Message}";
        return new ChunkStoreIOException(message, path, full, exception);
    }

    /// <summary>pread until <paramref name="destination"/> is full or end of file; returns the bytes read.</summary>
    public static int ReadFully(SafeFileHandle handle, string path, Span<byte> destination, long offset)
    {
        var total = 0;
        try
        {
            while (total < destination.Length)
            {
                var n = RandomAccess.Read(handle, destination[total..], offset + total);
                if (n == 0)
                {
                    break;
                }
                total += n;
            }
        }
        catch (IOException ex)
        {
            throw Wrap(ex, path, "reading");
        }
        return total;
    }

    public static void Write(SafeFileHandle handle, string path, ReadOnlySpan<byte> source, long offset)
    {
        try
        {
            RandomAccess.Write(handle, source, offset);
        }
        catch (IOException ex)
        {
            throw Wrap(ex, path, "writing");
        }
    }

    /// <summary>fsync: the bytes written so far (and the file's length) survive a power cut.</summary>
    public static void Sync(SafeFileHandle handle, string path)
    {
        try
        {
            RandomAccess.FlushToDisk(handle);
        }
        catch (IOException ex)
        {
            throw Wrap(ex, path, "syncing");
        }
    }

    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    /// <summary>
    /// Opens (or creates, 0600) a store file for positional IO. The mode is open(2)'s own argument: a
    /// file created 0644 and tightened afterwards could be opened by another user in between, and
    /// that descriptor would keep reading whatever is written later. An existing file left looser by
    /// an older build is tightened.
    /// </summary>
    public static SafeFileHandle OpenReadWrite(string path, FileMode mode, FileShare share = FileShare.Read)
    {
        try
        {
            if (OperatingSystem.IsWindows())
            {
                return File.OpenHandle(path, mode, FileAccess.ReadWrite, share);
            }
            if (mode != FileMode.Open)
            {
                // FileStream is the only managed way to pass a mode to open(2); the handle proper comes from OpenHandle.
                using var create = new FileStream(path, new FileStreamOptions
                {
                    Mode = mode == FileMode.Create ? FileMode.OpenOrCreate : mode,
                    Access = FileAccess.ReadWrite,
                    Share = share,
                    UnixCreateMode = VmStateModes.File,
                });
            }
            var handle = File.OpenHandle(path, mode == FileMode.Create ? FileMode.Create : FileMode.Open, FileAccess.ReadWrite, share);
            if ((File.GetUnixFileMode(handle) & GroupOrOther) != 0)
            {
                File.SetUnixFileMode(handle, VmStateModes.File);
            }
            return handle;
        }
        catch (IOException ex)
        {
            throw Wrap(ex, path, "opening");
        }
    }

    /// <summary>Takes group and other permissions off an existing file (one an older build created 0644).</summary>
    public static void MakePrivate(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        try
        {
            if ((File.GetUnixFileMode(path) & GroupOrOther) != 0)
            {
                File.SetUnixFileMode(path, File.GetUnixFileMode(path) & ~GroupOrOther);
            }
        }
        catch (IOException ex)
        {
            throw Wrap(ex, path, "making private (0600)");
        }
    }

    /// <summary>Opens a store file O_RDONLY (`inspect`): nothing the store does through it can change the file.</summary>
    public static SafeFileHandle OpenReadOnly(string path)
    {
        try
        {
            // FileShare.ReadWrite: a sink may hold the same files open for writing.
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
        catch (IOException ex)
        {
            throw Wrap(ex, path, "opening");
        }
    }

    /// <summary>
    /// Creates a store directory 0700, or tightens an existing one to 0700. chmod(2) succeeds only for
    /// the owner, so a directory that belongs to someone else (who could read everything put in it)
    /// is refused with one line instead of used.
    /// </summary>
    public static void CreatePrivateDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
            return;
        }
        if (!Directory.Exists(directory))
        {
            // Parents created on the way get the same mode.
            Directory.CreateDirectory(directory, VmStateModes.Directory);
            return;
        }
        try
        {
            if ((File.GetUnixFileMode(directory) & GroupOrOther) != 0)
            {
                File.SetUnixFileMode(directory, VmStateModes.Directory);
            }
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new ChunkStoreIOException(
                $"'{directory}' would hold VM state but is open to others and not owned by this user, so it cannot be made private (0700); use a directory of your own.",
                directory, false, ex);
        }
        catch (IOException ex)
        {
            throw Wrap(ex, directory, "making private (0700)");
        }
    }

    /// <summary>
    /// Writes a whole file so that a reader sees either the old content or the new, never a mix:
    /// tmp + fsync, rename over, fsync the directory (the rename itself is only durable once the
    /// directory entry is).
    /// </summary>
    public static void WriteAtomically(string path, ReadOnlySpan<byte> content)
    {
        var tmp = path + ".tmp";
        using (var handle = OpenReadWrite(tmp, FileMode.Create))
        {
            Write(handle, tmp, content, 0);
            Sync(handle, tmp);
        }
        Replace(tmp, path);
    }

    /// <summary><see cref="WriteAtomically(string, ReadOnlySpan{byte})"/> for content written as a stream (a manifest may pass 2 GiB).</summary>
    public static void WriteAtomically(string path, Action<Stream> write)
    {
        var tmp = path + ".tmp";
        // The stream owns the handle from here on and closes it.
        using (var stream = new FileStream(OpenReadWrite(tmp, FileMode.Create), FileAccess.ReadWrite, bufferSize: 1 << 16))
        {
            try
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            catch (IOException ex)
            {
                throw Wrap(ex, tmp, "writing and syncing");
            }
        }
        Replace(tmp, path);
    }

    /// <summary>Renames a synced <paramref name="tmp"/> over <paramref name="path"/> and makes the rename durable.</summary>
    public static void Replace(string tmp, string path)
    {
        try
        {
            File.Move(tmp, path, overwrite: true);
        }
        catch (IOException ex)
        {
            throw Wrap(ex, path, "renaming into");
        }
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>
    /// fsync a directory so entries created or renamed in it survive a crash. .NET cannot open a
    /// directory as a file handle, hence open(2)/fsync(2) directly. Windows has no equivalent
    /// (NTFS journals its metadata), so this is a no-op there.
    /// </summary>
    public static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        // O_RDONLY (0): enough to fsync a directory; O_DIRECTORY's value differs between Linux
        // architectures and macOS, so it is left out.
        var fd = Open(directory, 0);
        if (fd < 0)
        {
            throw DirectoryError(directory, "opening directory");
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                throw DirectoryError(directory, "syncing directory");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    private static ChunkStoreIOException DirectoryError(string directory, string operation)
    {
        var errno = Marshal.GetLastPInvokeError();
        var inner = new IOException(Marshal.GetPInvokeErrorMessage(errno), errno);
        return Wrap(inner, directory, operation);
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
