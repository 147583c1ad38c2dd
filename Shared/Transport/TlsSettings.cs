using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace StreamClone.Shared.Transport;

/// <summary>
/// Decides whether a peer's certificate is one of ours. Returns null to accept, or the reason for
/// the refusal ("no certificate", "issued by another CA", "expired on …"): the transport logs it
/// with the peer's address and closes the connection before any frame is read or sent.
/// </summary>
public interface IPeerCertificateValidator
{
    string? Refuse(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors);

    /// <summary>The name a peer goes by in logs and summaries (its certificate's common name).</summary>
    string PeerName(X509Certificate certificate);
}

/// <summary>
/// What a node needs for mutual TLS on every connection it makes or accepts: its own certificate
/// (with private key), the certificates that complete its chain, and the rule for its peers'
/// certificates. A node without TLS settings runs plain TCP (<c>--insecure</c>) and says so in its log.
/// </summary>
public sealed record TlsSettings(
    X509Certificate2 Certificate,
    X509Certificate2Collection Chain,
    IPeerCertificateValidator PeerValidator);
