using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Security;

/// <summary>
/// The peer rule of mutual TLS: a peer is one of ours when its certificate chains to THIS cluster's CA
/// (the only trusted root: no system roots), is within its validity, and is issued for both TLS
/// server and client use (every node does both). Offline: no revocation lists, no downloads; a node
/// that must stop being trusted waits out its certificate's validity or the cluster gets a new CA.
/// <para>
/// Peers are authenticated by the cluster CA, not by host name. .NET also reports
/// <see cref="SslPolicyErrors.RemoteCertificateNameMismatch"/> to a client whose target host is not
/// in the server's certificate, and <see cref="SslPolicyErrors.RemoteCertificateChainErrors"/> for any
/// chain that ends outside the system roots; both answer questions this rule does not ask, so the
/// platform's verdict and chain are set aside and the certificate is judged here. Nodes are dialled by
/// address (a sink connects to 127.0.0.1 or an IP) while their certificates carry node names, and any
/// holder of a cluster certificate may serve a snapshot: the name a peer proves is reported
/// (<see cref="PeerName"/>), not matched against the address dialled.
/// </para>
/// </summary>
public sealed class ClusterCertificateValidator : IPeerCertificateValidator
{
    /// <summary>id-kp-serverAuth (RFC 5280 §4.2.1.12).</summary>
    public const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";

    /// <summary>id-kp-clientAuth (RFC 5280 §4.2.1.12).</summary>
    public const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";

    private readonly X509Certificate2 _clusterCa;
    private readonly TimeProvider _time;

    public ClusterCertificateValidator(X509Certificate2 clusterCa, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(clusterCa);
        _clusterCa = clusterCa;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The root every accepted certificate chains to.</summary>
    public X509Certificate2 ClusterCa => _clusterCa;

    public string? Refuse(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        // chain and errors are the platform's verdict against the system roots and the host name: see the class comment.
        if (certificate is null)
        {
            return PeerRefusal.NoCertificate.Reason;
        }
        if (certificate is X509Certificate2 certificate2)
        {
            return Check(certificate2)?.Reason;
        }
        using var loaded = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return Check(loaded)?.Reason;
    }

    public string PeerName(X509Certificate certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        if (certificate is X509Certificate2 certificate2)
        {
            return NodeName.Printable(certificate2.GetNameInfo(X509NameType.SimpleName, forIssuer: false), NodeName.MaxLength);
        }
        using var loaded = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return NodeName.Printable(loaded.GetNameInfo(X509NameType.SimpleName, forIssuer: false), NodeName.MaxLength);
    }

    /// <summary>Null when <paramref name="certificate"/> is a node certificate of this cluster, valid now; else why not.</summary>
    public PeerRefusal? Check(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(_clusterCa);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.VerificationTime = _time.GetUtcNow().UtcDateTime;
        if (!chain.Build(certificate))
        {
            return Explain(certificate, chain);
        }
        var usage = certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault();
        if (usage is null || !HasUsage(usage, ServerAuthOid) || !HasUsage(usage, ClientAuthOid))
        {
            return new PeerRefusal(PeerRefusalKind.NotANode, "not a node certificate (it is not issued for both TLS server and client use)");
        }
        return null;
    }

    private PeerRefusal Explain(X509Certificate2 certificate, X509Chain chain)
    {
        var all = X509ChainStatusFlags.NoError;
        foreach (var status in chain.ChainStatus)
        {
            all |= status.Status;
        }
        // Trust first: a stranger's certificate is refused as a stranger's, whatever its dates say.
        // PartialChain: its issuer is not our CA (and strangers' CAs are never looked up);
        // NotSignatureValid: a CA that copied our CA's name but not its key signed it.
        const X509ChainStatusFlags Untrusted = X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain
            | X509ChainStatusFlags.NotSignatureValid | X509ChainStatusFlags.ExplicitDistrust | X509ChainStatusFlags.Cyclic;
        if ((all & Untrusted) != 0)
        {
            return new PeerRefusal(PeerRefusalKind.AnotherCa, $"issued by another CA ({NodeName.Printable(certificate.Issuer)}), not by this cluster's");
        }
        if ((all & X509ChainStatusFlags.NotTimeValid) != 0)
        {
            var now = _time.GetUtcNow();
            foreach (var element in chain.ChainElements)
            {
                var isCa = !element.Certificate.RawDataMemory.Span.SequenceEqual(certificate.RawDataMemory.Span);
                var whose = isCa ? "the cluster CA " : "";
                var notAfter = new DateTimeOffset(element.Certificate.NotAfter.ToUniversalTime());
                var notBefore = new DateTimeOffset(element.Certificate.NotBefore.ToUniversalTime());
                if (now > notAfter)
                {
                    return new PeerRefusal(isCa ? PeerRefusalKind.ClusterCaNotValid : PeerRefusalKind.Expired, $"{whose}expired on {Format(notAfter)}");
                }
                if (now < notBefore)
                {
                    return new PeerRefusal(isCa ? PeerRefusalKind.ClusterCaNotValid : PeerRefusalKind.NotYetValid, $"{whose}not valid before {Format(notBefore)} (check the clocks)");
                }
            }
        }
        var statuses = string.Join("; ", chain.ChainStatus.Select(s => NodeName.Printable(s.StatusInformation.Trim(), 120)).Distinct());
        return new PeerRefusal(PeerRefusalKind.Other, $"certificate refused ({statuses})");
    }

    private static bool HasUsage(X509EnhancedKeyUsageExtension usage, string oid)
    {
        foreach (var entry in usage.EnhancedKeyUsages)
        {
            if (entry.Value == oid)
            {
                return true;
            }
        }
        return false;
    }

    private static string Format(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
}

public enum PeerRefusalKind
{
    NoCertificate = 1,
    AnotherCa,
    Expired,
    NotYetValid,
    NotANode,

    /// <summary>The cluster CA itself is out of its dates: every certificate of the cluster is refused until it has a new CA.</summary>
    ClusterCaNotValid,
    Other,
}

/// <summary>Why a peer's certificate is refused: a kind to act on and a reason for the log line.</summary>
public sealed record PeerRefusal(PeerRefusalKind Kind, string Reason)
{
    public static PeerRefusal NoCertificate { get; } = new(PeerRefusalKind.NoCertificate, "no certificate");
}
