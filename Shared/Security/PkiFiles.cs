using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace StreamClone.Shared.Security;

/// <summary>How the PKI's files are written and read: modes, atomic publication, key checks.</summary>
internal static class PkiFiles
{
    /// <summary>A private key: the owner's alone, from the moment the file exists.</summary>
    public const UnixFileMode KeyMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Certificates are public; the 0700 directory keeps others out anyway.</summary>
    public const UnixFileMode CertificateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>
    /// Creates <paramref name="path"/> 0700 with its missing parents (~/.config/streamclone on first use;
    /// .NET gives parents the default mode, which is right for them: they hold nothing secret).
    /// </summary>
    public static void CreateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
        }
        else
        {
            Directory.CreateDirectory(path, DirectoryMode);
        }
    }

    /// <summary>
    /// Writes <paramref name="text"/> to a new temporary file beside <paramref name="path"/>, created with
    /// <paramref name="mode"/> (never chmod'ed after: a key is never readable by others, not even for a
    /// moment), syncs it, and renames it into place, so a reader sees the whole file or none.
    /// Without <paramref name="overwrite"/> an existing file is an <see cref="IOException"/>.
    /// </summary>
    public static void Publish(string path, string text, UnixFileMode mode, bool overwrite)
    {
        var temporary = $"{path}.{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = mode;
        }
        try
        {
            using (var stream = new FileStream(temporary, options))
            {
                stream.Write(System.Text.Encoding.ASCII.GetBytes(text));
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>Loads a PEM private key, refusing one that others may read (as ssh does: it may already be copied).</summary>
    public static ECDsa LoadKey(string path)
    {
        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & ~(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute)) != 0)
            {
                throw new UnauthorizedAccessException($"private key {path} is accessible by others (mode {Convert.ToString((int)mode, 8)}); chmod 600 it");
            }
        }
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(File.ReadAllText(path));
            return key;
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            key.Dispose();
            throw new InvalidDataException($"{path} is not a PEM ECDSA private key: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// A certificate with its private key in the form SslStream can present. A key attached by
    /// CopyWithPrivateKey is ephemeral; OpenSSL uses it as it is, but SChannel (Windows) can only
    /// present a key that went through a PKCS#12 round trip, and that costs a millisecond once.
    /// </summary>
    public static X509Certificate2 ForTls(X509Certificate2 withEphemeralKey)
    {
        if (!OperatingSystem.IsWindows())
        {
            return withEphemeralKey;
        }
        using (withEphemeralKey)
        {
            return X509CertificateLoader.LoadPkcs12(withEphemeralKey.Export(X509ContentType.Pkcs12), null);
        }
    }
}
