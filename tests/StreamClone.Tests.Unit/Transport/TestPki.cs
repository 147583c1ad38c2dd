using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Transport;

namespace StreamClone.Tests.Unit.Transport;

/// <summary>
/// A test CA and node certificates made inline (ECDSA P-256, CertificateRequest), and a peer rule that
/// accepts exactly the certificates this CA issued and that are in date: a stand-in for the PKI's own
/// validator, with the same refusal wording ("no certificate", "issued by another CA", "expired on …").
/// </summary>
public sealed class TestPki : IDisposable
{
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public TestPki(string name)
    {
        var request = new CertificateRequest($"CN={name}", _caKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        Authority = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddYears(-1), DateTimeOffset.UtcNow.AddYears(1));
    }

    public X509Certificate2 Authority { get; }

    /// <summary>A node certificate (client and server use) with its private key, valid from <paramref name="notBefore"/> to <paramref name="notAfter"/>.</summary>
    public X509Certificate2 Issue(string name, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Authority, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var issued = request.Create(Authority, notBefore ?? DateTimeOffset.UtcNow.AddDays(-1), notAfter ?? DateTimeOffset.UtcNow.AddDays(30), serial);
        using var withKey = issued.CopyWithPrivateKey(key);
        // Through PKCS#12 so the key is a persisted-style key the TLS stack can use on every platform.
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>TLS settings for a node of this CA, trusting this CA only.</summary>
    public TlsSettings Node(string name, X509Certificate2? certificate = null) =>
        new(certificate ?? Issue(name), [], new Validator(Authority));

    /// <summary>TLS settings whose own certificate is <paramref name="certificate"/> (perhaps from another CA) but whose rule trusts this CA.</summary>
    public TlsSettings Trusting(X509Certificate2 certificate) => new(certificate, [], new Validator(Authority));

    public void Dispose()
    {
        Authority.Dispose();
        _caKey.Dispose();
    }

    private sealed class Validator(X509Certificate2 authority) : IPeerCertificateValidator
    {
        public string? Refuse(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
        {
            if (certificate is null)
            {
                return "no certificate";
            }
            using var peer = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            if (peer.NotAfter.ToUniversalTime() < DateTime.UtcNow)
            {
                return $"expired on {peer.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC";
            }
            using var ours = new X509Chain();
            ours.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            ours.ChainPolicy.CustomTrustStore.Add(authority);
            ours.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return ours.Build(peer) ? null : "issued by another CA";
        }

        public string PeerName(X509Certificate certificate)
        {
            using var peer = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            return peer.GetNameInfo(X509NameType.SimpleName, false);
        }
    }
}
