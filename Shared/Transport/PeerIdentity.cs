namespace StreamClone.Shared.Transport;

/// <summary>
/// Who is at the other end, for logs and summaries. Under TLS the name comes from the certificate the peer
/// proved it holds (<see cref="IPeerCertificateValidator.PeerName"/>); without TLS it is only the label the
/// peer put in its Hello, and says so.
/// </summary>
public sealed record PeerIdentity(string Name, bool Verified, string Address)
{
    /// <summary>"node-b (10.0.0.2:40312)", or "\"node-b\" (unverified, 10.0.0.2:40312)" without TLS.</summary>
    public override string ToString() => Verified ? $"{Name} ({Address})" : $"\"{Name}\" (unverified, {Address})";
}

/// <summary>The roles a Hello names (wire values).</summary>
public static class NodeRoles
{
    public const string Source = "source";
    public const string Relay = "relay";
    public const string Sink = "sink";
}
