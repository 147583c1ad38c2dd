using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Security;

namespace StreamClone.Tests.Unit.Security;

/// <summary>The peer rule on certificates a hostile peer could craft, without a handshake around it.</summary>
public sealed class ClusterCertificateValidatorTests : IDisposable
{
    private readonly TempPki _cluster = new();

    public void Dispose() => _cluster.Dispose();

    [Fact]
    public void A_certificate_of_this_CA_not_issued_for_both_TLS_uses_is_refused_as_not_a_node()
    {
        using var caKey = PkiFiles.LoadKey(_cluster.Pki.CaKeyPath);
        using var serverOnly = Sign("CN=web", caKey, _cluster.Pki.CaCertificate.SubjectName, [ClusterCertificateValidator.ServerAuthOid]);

        var refusal = _cluster.Pki.Validator.Check(serverOnly);

        Assert.Equal(PeerRefusalKind.NotANode, refusal?.Kind);
    }

    [Fact]
    public void A_CA_that_copies_this_CAs_name_but_not_its_key_is_another_CA()
    {
        using var impostorKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var forged = Sign("CN=sink-1", impostorKey, _cluster.Pki.CaCertificate.SubjectName,
            [ClusterCertificateValidator.ServerAuthOid, ClusterCertificateValidator.ClientAuthOid]);

        var refusal = _cluster.Pki.Validator.Check(forged);

        Assert.Equal(PeerRefusalKind.AnotherCa, refusal?.Kind);
    }

    [Fact]
    public void The_platforms_name_and_chain_verdicts_do_not_decide()
    {
        var node = _cluster.Node("sink-1");

        // What a sink dialling 127.0.0.1 is told about a good source: neither error is one the cluster rule has.
        Assert.Null(node.Validator.Refuse(node.Certificate, null, SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateChainErrors));
        Assert.Equal("no certificate", node.Validator.Refuse(null, null, SslPolicyErrors.RemoteCertificateNotAvailable));
        Assert.Equal("sink-1", node.Validator.PeerName(node.Certificate));
    }

    [Fact]
    public void A_peer_name_is_printable_text_whatever_the_certificate_says()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddCommonName("evil\nnode\u001b[31m" + new string('x', 200));
        using var hostile = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));

        var name = _cluster.Pki.Validator.PeerName(hostile);
        var refusal = _cluster.Pki.Validator.Check(hostile);

        Assert.StartsWith("evil?node?[31m", name, StringComparison.Ordinal);
        Assert.True(name.Length <= NodeName.MaxLength + 1);
        Assert.All(name, c => Assert.True(c is >= ' ' and <= '~' or '…'));
        Assert.Equal(PeerRefusalKind.AnotherCa, refusal?.Kind);
        Assert.DoesNotContain('\n', refusal!.Reason);
    }

    private static X509Certificate2 Sign(string subject, ECDsa issuerKey, X500DistinguishedName issuer, string[] usages)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([.. usages.Select(u => new Oid(u))], critical: false));
        var now = DateTimeOffset.UtcNow;
        return request.Create(issuer, X509SignatureGenerator.CreateForECDsa(issuerKey), now.AddHours(-1), now.AddDays(1), [0x01, 0x23, 0x45, 0x67]);
    }
}
