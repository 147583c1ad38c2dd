using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Security;

/// <summary>
/// One node's identity in its cluster: its certificate with private key, the cluster CA, and the rule
/// its peers' certificates must pass. <see cref="ToTlsSettings"/> is what the transport takes.
/// </summary>
public sealed class NodeCredentials
{
    internal NodeCredentials(string name, string pkiDirectory, X509Certificate2 certificate, X509Certificate2 clusterCa, ClusterCertificateValidator validator)
    {
        Name = name;
        PkiDirectory = pkiDirectory;
        Certificate = certificate;
        ClusterCa = clusterCa;
        Validator = validator;
    }

    /// <summary>This node's name (its certificate's CN).</summary>
    public string Name { get; }

    public string PkiDirectory { get; }

    /// <summary>This node's certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    public X509Certificate2 ClusterCa { get; }

    public ClusterCertificateValidator Validator { get; }

    /// <summary>SHA-256 of the cluster CA's certificate: two nodes with the same one are in the same cluster.</summary>
    public string ClusterFingerprint => Convert.ToHexStringLower(SHA256.HashData(ClusterCa.RawDataMemory.Span));

    /// <summary>
    /// What the transport needs. The chain sent after the node's certificate is the CA: peers ignore it
    /// (they trust only their own copy) but it lets a human or tool inspecting the handshake see the cluster.
    /// </summary>
    public TlsSettings ToTlsSettings() => new(Certificate, [ClusterCa], Validator);

    /// <summary>
    /// The credentials of node <paramref name="nodeName"/> (default: this host's name) from the default
    /// PKI (<see cref="ClusterPki.DefaultDirectory"/>), creating the CA and the node's certificate on first use.
    /// </summary>
    public static NodeCredentials OpenOrCreateDefault(string? nodeName = null) => OpenOrCreate(ClusterPki.DefaultDirectory(), nodeName);

    /// <summary>As <see cref="OpenOrCreateDefault"/> for the PKI in <paramref name="directory"/>.</summary>
    public static NodeCredentials OpenOrCreate(string directory, string? nodeName = null) =>
        ClusterPki.OpenOrCreate(directory).GetOrIssueNode(nodeName ?? NodeName.Default());

    /// <summary>
    /// The credentials of node <paramref name="nodeName"/> from an existing PKI (<c>pki init</c>): the CA
    /// must be there; the node's certificate is issued when missing only if the CA key is there too.
    /// </summary>
    public static NodeCredentials Open(string directory, string? nodeName = null) =>
        ClusterPki.Open(directory).GetOrIssueNode(nodeName ?? NodeName.Default());
}
