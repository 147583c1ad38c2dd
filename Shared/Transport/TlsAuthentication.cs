using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace StreamClone.Shared.Transport;

/// <summary>
/// Per-connection TLS options built from <see cref="TlsSettings"/>: mutual authentication, the peer's
/// certificate judged by <see cref="IPeerCertificateValidator.Refuse"/> alone. Each instance serves one
/// handshake and keeps the validator's refusal, so the log can say why ("refused 127.0.0.1:40312: issued
/// by another CA") rather than the TLS stack's generic failure.
/// </summary>
internal sealed class TlsAuthentication
{
    // Building the chain context walks the certificates once; every connection of a node reuses it.
    private static readonly ConditionalWeakTable<TlsSettings, SslStreamCertificateContext> Contexts = new();
    private readonly TlsSettings _settings;

    public TlsAuthentication(TlsSettings settings) => _settings = settings;

    /// <summary>The validator's reason, once it refused the peer's certificate.</summary>
    public string? Refusal { get; private set; }

    public SslServerAuthenticationOptions ServerOptions() => new()
    {
        ServerCertificateContext = Context(),
        ClientCertificateRequired = true,
        // Revocation is the PKI's business (short-lived node certificates); a network fetch here would stall every accept.
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = Validate,
    };

    public SslClientAuthenticationOptions ClientOptions(string targetHost) => new()
    {
        TargetHost = targetHost,
        // A context is sent whatever issuers the server lists (a bare ClientCertificates collection is filtered by them).
        ClientCertificateContext = Context(),
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        RemoteCertificateValidationCallback = Validate,
    };

    private SslStreamCertificateContext Context() =>
        Contexts.GetValue(_settings, settings => SslStreamCertificateContext.Create(settings.Certificate, settings.Chain, offline: true));

    private bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        string? refusal;
        try
        {
            refusal = _settings.PeerValidator.Refuse(certificate, chain, errors);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            refusal = $"unreadable certificate: {ex.Message}";
        }
        Refusal = refusal;
        return refusal is null;
    }

    /// <summary>
    /// Why a peer whose first bytes are <paramref name="first"/> is no TLS client at all, or null when they
    /// could start a TLS handshake record (content type 22).
    /// </summary>
    public static string? NotTls(ReadOnlySpan<byte> first) =>
        first.Length == 0 || first[0] == 22 ? null
        : first.Length >= 2 && System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(first) == Protocol.Frame.Magic
            ? "spoke plain TCP, not TLS (a StreamClone frame in clear text: is the peer running --insecure?)"
            : $"not a TLS client (first byte 0x{first[0]:x2})";

    /// <summary>The one line for a failed handshake: the validator's reason when it refused, else what TLS said.</summary>
    public string Describe(Exception ex) => Refusal ?? ex switch
    {
        AuthenticationException => $"TLS handshake failed: {ex.Message}",
        OperationCanceledException => "TLS handshake did not complete in time",
        _ => $"no TLS handshake: {ex.Message}",
    };
}
