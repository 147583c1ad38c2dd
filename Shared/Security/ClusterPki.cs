using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace StreamClone.Shared.Security;

/// <summary>
/// A cluster's PKI directory (PEM files):
/// <code>
/// ca.crt, ca.key                    the cluster CA; ca.key only where certificates are issued
/// nodes/NAME.crt, nodes/NAME.key    one certificate per node, signed by the CA
/// pki.lock                          held while the directory is read or changed
/// </code>
/// Keys are 0600 from their creation, directories 0700. Files appear by rename once complete, a key
/// before its certificate, so a reader sees a whole CA or none; creating and reading take
/// <c>pki.lock</c>, so processes that start at once (a demo, a test run) share one CA and never read a
/// node's key of one issue with the certificate of another.
/// <para>
/// ECDSA P-256 for every key: generated in well under a millisecond (RSA-2048 takes ~100 ms, a lot for
/// a first run, and for tests that make dozens), small certificates and cheap handshakes on two cores,
/// and supported by every TLS 1.2/1.3 stack and every OpenSSL a Linux host ships.
/// </para>
/// </summary>
public sealed partial class ClusterPki
{
    public const string CaCertificateFile = "ca.crt";
    public const string CaKeyFile = "ca.key";
    public const string NodesDirectory = "nodes";

    /// <summary>A CA outlives the clusters it is made for; renewing it means issuing every node again.</summary>
    public static readonly TimeSpan CaValidity = TimeSpan.FromDays(3653);

    /// <summary>
    /// A node certificate's default life. Nodes are not revocable (offline, no CRL), so a stolen node key
    /// stays usable this long; a year bounds that while a node's own expired certificate is renewed on
    /// its next start wherever the CA key lives (<see cref="GetOrIssueNode"/>).
    /// </summary>
    public static readonly TimeSpan DefaultNodeValidity = TimeSpan.FromDays(365);

    /// <summary>
    /// Certificates start this much before their issue: a peer whose clock runs a little behind the
    /// issuer's would otherwise refuse a fresh certificate as "not valid before".
    /// </summary>
    public static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(5);

    private ClusterPki(string directory, X509Certificate2 caCertificate)
    {
        Directory = directory;
        CaCertificate = caCertificate;
        Validator = new ClusterCertificateValidator(caCertificate);
    }

    /// <summary>The PKI directory (full path).</summary>
    public string Directory { get; }

    /// <summary>The cluster CA's certificate (no private key).</summary>
    public X509Certificate2 CaCertificate { get; }

    /// <summary>The peer rule of this cluster.</summary>
    public ClusterCertificateValidator Validator { get; }

    public string CaCertificatePath => Path.Combine(Directory, CaCertificateFile);

    public string CaKeyPath => Path.Combine(Directory, CaKeyFile);

    /// <summary>Whether this directory holds the CA's key, i.e. can issue node certificates.</summary>
    public bool CanIssue => File.Exists(CaKeyPath);

    public string NodeCertificatePath(string name) => Path.Combine(Directory, NodesDirectory, NodeName.Validate(name) + ".crt");

    public string NodeKeyPath(string name) => Path.Combine(Directory, NodesDirectory, NodeName.Validate(name) + ".key");

    /// <summary>
    /// The default PKI: <c>$XDG_CONFIG_HOME/streamclone/pki</c>, else <c>~/.config/streamclone/pki</c>
    /// (XDG base directories: a relative XDG_CONFIG_HOME is invalid and ignored).
    /// </summary>
    public static string DefaultDirectory()
    {
        var config = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME");
        if (string.IsNullOrEmpty(config) || !Path.IsPathRooted(config))
        {
            var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(home))
            {
                throw new IOException("no home directory for the default PKI: give --pki DIR (or set XDG_CONFIG_HOME)");
            }
            config = Path.Combine(home, ".config");
        }
        return Path.Combine(config, "streamclone", "pki");
    }

    /// <summary>
    /// Creates the cluster CA in <paramref name="directory"/> (created 0700 when missing). An existing CA
    /// is never replaced (<see cref="IOException"/>): every node's certificate depends on it.
    /// </summary>
    public static ClusterPki Init(string directory)
    {
        var full = PrepareDirectory(directory);
        using var held = PkiLock.Acquire(full);
        if (File.Exists(Path.Combine(full, CaCertificateFile)))
        {
            throw new IOException($"{full} already holds a cluster CA ({CaCertificateFile}); refusing to replace it (every node's certificate depends on it)");
        }
        return new ClusterPki(full, CreateCa(full));
    }

    /// <summary>Opens an existing PKI: <paramref name="directory"/> must hold a cluster CA (<c>pki init</c>).</summary>
    public static ClusterPki Open(string directory)
    {
        var full = Path.GetFullPath(directory);
        if (!System.IO.Directory.Exists(full))
        {
            throw new DirectoryNotFoundException($"no PKI directory {full} (create one with `streamclone pki init --out {full}`)");
        }
        CheckDirectory(full);
        using var held = PkiLock.AcquireToRead(full);
        if (!File.Exists(Path.Combine(full, CaCertificateFile)))
        {
            throw new FileNotFoundException($"{full} holds no cluster CA ({CaCertificateFile}); create one with `streamclone pki init --out {full}`");
        }
        return new ClusterPki(full, LoadCa(full));
    }

    /// <summary>Opens the PKI in <paramref name="directory"/>, creating the directory and the cluster CA on first use.</summary>
    public static ClusterPki OpenOrCreate(string directory)
    {
        var full = PrepareDirectory(directory);
        using var held = PkiLock.Acquire(full);
        return new ClusterPki(full, File.Exists(Path.Combine(full, CaCertificateFile)) ? LoadCa(full) : CreateCa(full));
    }

    /// <summary>
    /// Issues (or re-issues: the old pair is replaced) node <paramref name="name"/>'s certificate, valid
    /// for <paramref name="validity"/> from now but never beyond the CA's own end.
    /// </summary>
    public X509Certificate2 Issue(string name, TimeSpan validity)
    {
        if (validity <= TimeSpan.Zero)
        {
            throw new FormatException($"a certificate's validity must be positive, not {validity}");
        }
        var now = DateTimeOffset.UtcNow;
        var caEnd = new DateTimeOffset(CaCertificate.NotAfter.ToUniversalTime());
        var notAfter = validity >= caEnd - now ? caEnd : now + validity;
        return Issue(name, now - ClockSkew, notAfter);
    }

    /// <summary>Issues with explicit dates, as given (tests make expired and future certificates with it).</summary>
    internal X509Certificate2 Issue(string name, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        NodeName.Validate(name);
        using var held = PkiLock.Acquire(Directory);
        return IssueLocked(name, notBefore, notAfter);
    }

    /// <summary>
    /// This node's credentials: its certificate, issued on first use when the CA key is here, and
    /// issued again when it expired (or is not yet valid). Without the CA key a missing or unusable
    /// certificate is an error naming the command that fixes it.
    /// </summary>
    public NodeCredentials GetOrIssueNode(string name)
    {
        NodeName.Validate(name);
        var certificatePath = NodeCertificatePath(name);
        using var held = CanIssue ? PkiLock.Acquire(Directory) : PkiLock.AcquireToRead(Directory);
        if (!File.Exists(certificatePath))
        {
            if (!CanIssue)
            {
                throw new FileNotFoundException($"{Directory} holds no certificate for node '{name}' and cannot issue one (no {CaKeyFile}): run `streamclone pki issue --name {name}` where the CA key is and copy nodes/{name}.crt and nodes/{name}.key here");
            }
            var now = DateTimeOffset.UtcNow;
            IssueLocked(name, now - ClockSkew, Min(now + DefaultNodeValidity, CaCertificate.NotAfter)).Dispose();
        }
        var credentials = LoadNodeLocked(name);
        var refusal = Validator.Check(credentials.Certificate);
        if (refusal is { Kind: PeerRefusalKind.Expired or PeerRefusalKind.NotYetValid } && CanIssue)
        {
            credentials.Certificate.Dispose();
            var now = DateTimeOffset.UtcNow;
            IssueLocked(name, now - ClockSkew, Min(now + DefaultNodeValidity, CaCertificate.NotAfter)).Dispose();
            credentials = LoadNodeLocked(name);
            refusal = Validator.Check(credentials.Certificate);
        }
        if (refusal is not null)
        {
            credentials.Certificate.Dispose();
            throw new InvalidDataException($"this node's own certificate {certificatePath} would be refused by its peers: {refusal.Reason}");
        }
        return credentials;
    }

    /// <summary>Node <paramref name="name"/>'s files as they are, judged by nobody (tests present stale certificates with it).</summary>
    internal NodeCredentials LoadNode(string name)
    {
        NodeName.Validate(name);
        using var held = PkiLock.AcquireToRead(Directory);
        return LoadNodeLocked(name);
    }

    private static DateTimeOffset Min(DateTimeOffset wanted, DateTime caNotAfter)
    {
        var caEnd = new DateTimeOffset(caNotAfter.ToUniversalTime());
        return wanted < caEnd ? wanted : caEnd;
    }

    private static X509Certificate2 CreateCa(string directory)
    {
        var caKeyPath = Path.Combine(directory, CaKeyFile);
        if (File.Exists(caKeyPath))
        {
            // A key without its certificate is what an interrupted init leaves (the key is published
            // first). Nothing was ever signed by it (issuing needs ca.crt), so no node depends on it.
            File.Delete(caKeyPath);
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        // A random suffix tells two clusters' CAs apart in "issued by another CA (...)" refusals.
        var subject = new X500DistinguishedNameBuilder();
        subject.AddCommonName($"StreamClone cluster CA {Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}");
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(X509BasicConstraintsExtension.CreateForCertificateAuthority(pathLengthConstraint: 0));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var now = DateTimeOffset.UtcNow;
        using var withKey = request.CreateSelfSigned(now - ClockSkew, now + CaValidity);
        PkiFiles.Publish(caKeyPath, key.ExportPkcs8PrivateKeyPem(), PkiFiles.KeyMode, overwrite: false);
        PkiFiles.Publish(Path.Combine(directory, CaCertificateFile), withKey.ExportCertificatePem(), PkiFiles.CertificateMode, overwrite: false);
        return X509CertificateLoader.LoadCertificate(withKey.RawDataMemory.Span);
    }

    private static X509Certificate2 LoadCa(string directory)
    {
        var path = Path.Combine(directory, CaCertificateFile);
        X509Certificate2 ca;
        try
        {
            ca = X509Certificate2.CreateFromPem(File.ReadAllText(path));
        }
        catch (CryptographicException ex)
        {
            throw new InvalidDataException($"{path} is not a PEM certificate: {ex.Message}", ex);
        }
        if (ca.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is not { CertificateAuthority: true })
        {
            ca.Dispose();
            throw new InvalidDataException($"{path} is not a CA certificate");
        }
        return ca;
    }

    private X509Certificate2 IssueLocked(string name, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        if (notAfter <= notBefore)
        {
            throw new FormatException($"a certificate must end after it starts ({notBefore:u} .. {notAfter:u})");
        }
        using var caKey = LoadCaKey();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddCommonName(name);
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(X509BasicConstraintsExtension.CreateForEndEntity(critical: true));
        // digitalSignature: an ECDSA key signs the TLS handshake (RFC 5280 §4.2.1.3, RFC 8446 §4.4.3).
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        // Every node both accepts connections and makes them (a relay does both at once).
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid(ClusterCertificateValidator.ServerAuthOid), new Oid(ClusterCertificateValidator.ClientAuthOid)], critical: false));
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName(name);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(CaCertificate, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        // RFC 5280 §4.1.2.2: positive, at most 20 octets, unique per CA; 16 random octets make it unique
        // without a counter file. The first octet is forced into 0x01..0x7F: positive, no leading zero.
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x01);
        // This overload signs without checking the dates against the CA's: tests issue already-expired certificates.
        var certificate = request.Create(CaCertificate.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), notBefore, notAfter, serial);
        PkiFiles.CreateDirectory(Path.Combine(Directory, NodesDirectory));
        PkiFiles.Publish(NodeKeyPath(name), key.ExportPkcs8PrivateKeyPem(), PkiFiles.KeyMode, overwrite: true);
        PkiFiles.Publish(NodeCertificatePath(name), certificate.ExportCertificatePem(), PkiFiles.CertificateMode, overwrite: true);
        return certificate;
    }

    private ECDsa LoadCaKey()
    {
        if (!File.Exists(CaKeyPath))
        {
            throw new FileNotFoundException($"{Directory} has no CA key ({CaKeyFile}): node certificates are issued where the CA was created");
        }
        var key = PkiFiles.LoadKey(CaKeyPath);
        using var caPublic = CaCertificate.GetECDsaPublicKey();
        if (caPublic is null || !caPublic.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(key.ExportSubjectPublicKeyInfo()))
        {
            key.Dispose();
            throw new InvalidDataException($"{CaKeyPath} is not the key of {CaCertificatePath}");
        }
        return key;
    }

    private NodeCredentials LoadNodeLocked(string name)
    {
        var certificatePath = NodeCertificatePath(name);
        var keyPath = NodeKeyPath(name);
        X509Certificate2 publicOnly;
        try
        {
            publicOnly = X509Certificate2.CreateFromPem(File.ReadAllText(certificatePath));
        }
        catch (CryptographicException ex)
        {
            throw new InvalidDataException($"{certificatePath} is not a PEM certificate: {ex.Message}", ex);
        }
        using (publicOnly)
        using (var key = PkiFiles.LoadKey(keyPath))
        {
            X509Certificate2 withKey;
            try
            {
                withKey = publicOnly.CopyWithPrivateKey(key);
            }
            catch (ArgumentException ex)
            {
                throw new InvalidDataException($"{keyPath} is not the key of {certificatePath}", ex);
            }
            return new NodeCredentials(name, Directory, PkiFiles.ForTls(withKey), CaCertificate, Validator);
        }
    }

    private static string PrepareDirectory(string directory)
    {
        var full = Path.GetFullPath(directory);
        PkiFiles.CreateDirectory(full);
        CheckDirectory(full);
        return full;
    }

    private static void CheckDirectory(string full)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }
        var mode = File.GetUnixFileMode(full);
        if ((mode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
        {
            throw new UnauthorizedAccessException($"PKI directory {full} is writable by others (mode {Convert.ToString((int)mode, 8)}): anyone there could replace the cluster CA; chmod 700 it");
        }
    }
}
