using System.Diagnostics;

namespace StreamClone.Shared.Security;

/// <summary>
/// <c>pki.lock</c>: held while a PKI directory is read or changed. FileShare.None is flock(LOCK_EX |
/// LOCK_NB) on Unix, taken per open file, so it excludes other threads of this process as well as other
/// processes, and the kernel drops it when its holder dies (no stale lock after a crash).
/// </summary>
internal static class PkiLock
{
    public const string FileName = "pki.lock";

    /// <summary>
    /// How long to wait for another holder. A holder makes a few ECDSA keys and writes a few small
    /// files (milliseconds); one that holds it this long is stuck, and saying so beats waiting forever.
    /// </summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Between attempts: .NET offers no blocking flock, so a busy lock is polled. Creation takes a few
    /// milliseconds, so a few milliseconds' wait is all a racing process loses.
    /// </summary>
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(5);

    /// <summary>Takes the lock of <paramref name="directory"/>, creating the lock file (0600) when missing.</summary>
    public static IDisposable Acquire(string directory)
    {
        var path = Path.Combine(directory, FileName);
        var options = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = PkiFiles.KeyMode;
        }
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new FileStream(path, options);
            }
            catch (IOException ex) when (ex is not FileNotFoundException and not DirectoryNotFoundException)
            {
                if (waited.Elapsed > Timeout)
                {
                    throw new IOException($"PKI directory {directory} stayed locked ({path}) for {Timeout.TotalSeconds:F0} s by another process", ex);
                }
                Thread.Sleep(Poll);
            }
        }
    }

    /// <summary>
    /// As <see cref="Acquire"/> for a reader; in a directory this user may read but not write (a PKI
    /// installed by root) there is no lock to take, and nobody with our rights can be changing it.
    /// </summary>
    public static IDisposable? AcquireToRead(string directory)
    {
        try
        {
            return Acquire(directory);
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
