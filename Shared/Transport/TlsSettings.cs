using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace StreamClone.Shared.Transport;

/// <summary>
/// Decides whether a peer's certificate is one of ours. Returns null to accept, or the reason for
/// the refusal ("no certificate", "issued by another CA", "expired on …"): the transport logs it
/// with the peer's address and closes the connection before any frame is read or sent.
/// Give it every callback's arguments unfiltered and let its answer alone decide: the platform's
/// <see cref="SslPolicyErrors"/> judge against the system roots and the dialled host name, which
/// the cluster rule replaces (a sink dialling 127.0.0.1 sees RemoteCertificateNameMismatch and
/// RemoteCertificateChainErrors for a good peer). Implementations are thread-safe and cheap (one
/// offline chain build), so they run inside every handshake.
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
/// <see cref="Certificate"/> and <see cref="Chain"/> go straight into
/// <c>SslStreamCertificateContext.Create(Certificate, Chain, offline: true)</c>, usable on both sides
/// (server certificate and client certificate); the server sets ClientCertificateRequired, so a client
/// without a certificate reaches <see cref="PeerValidator"/> as a null certificate. Made by
/// <c>StreamClone.Shared.Security.NodeCredentials.ToTlsSettings</c>.
/// </summary>
public sealed record TlsSettings(
    X509Certificate2 Certificate,
    X509Certificate2Collection Chain,
    IPeerCertificateValidator PeerValidator);
