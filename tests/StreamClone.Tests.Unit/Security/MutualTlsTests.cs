using StreamClone.Shared.Security;
using StreamClone.Shared.Transport;

namespace StreamClone.Tests.Unit.Security;

/// <summary>
/// Mutual TLS with the cluster PKI over real SslStream handshakes on loopback: who is let in, who is
/// refused, and with which reason.
/// </summary>
public sealed class MutualTlsTests : IDisposable
{
    private readonly TempPki _cluster = new();
    private readonly TempPki _stranger = new();

    public void Dispose()
    {
        _cluster.Dispose();
        _stranger.Dispose();
    }

    [Fact]
    public async Task Two_nodes_of_one_cluster_connect_and_each_learns_the_others_name()
    {
        var (server, client) = await TlsHandshake.RunAsync(Settings(_cluster, "source-1"), Settings(_cluster, "sink-1"));

        Assert.True(server.Connected, server.Error?.Message);
        Assert.True(client.Connected, client.Error?.Message);
        Assert.Null(server.Refusal);
        Assert.Null(client.Refusal);
        Assert.Equal("sink-1", server.PeerName);
        Assert.Equal("source-1", client.PeerName);
    }

    [Fact]
    public async Task A_client_without_a_certificate_is_refused_and_learns_it_on_its_first_read()
    {
        var (server, client) = await TlsHandshake.RunAsync(Settings(_cluster, "source-1"), Settings(_cluster, "sink-1"), clientPresentsCertificate: false);

        Assert.Equal("no certificate", server.Refusal);
        Assert.False(server.Connected);
        Assert.False(client.Connected);
        // The client had nothing to object to: the server did the refusing.
        Assert.Null(client.Refusal);
    }

    [Fact]
    public async Task A_client_from_another_cluster_is_refused_as_issued_by_another_CA()
    {
        var (server, client) = await TlsHandshake.RunAsync(Settings(_cluster, "source-1"), Settings(_stranger, "sink-1"));

        Assert.StartsWith("issued by another CA (CN=StreamClone cluster CA ", server.Refusal, StringComparison.Ordinal);
        Assert.Contains(_stranger.Pki.CaCertificate.GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.SimpleName, false), server.Refusal, StringComparison.Ordinal);
        Assert.False(server.Connected);
        Assert.False(client.Connected);
    }

    [Fact]
    public async Task A_client_with_an_expired_certificate_is_refused_with_its_end_date()
    {
        var now = DateTimeOffset.UtcNow;
        _cluster.Pki.Issue("sink-old", now.AddDays(-30), now.AddDays(-1)).Dispose();
        var oldSink = LoadWithoutRenewal(_cluster, "sink-old");

        var (server, client) = await TlsHandshake.RunAsync(Settings(_cluster, "source-1"), oldSink);

        var day = now.AddDays(-1).UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);
        Assert.StartsWith($"expired on {day} ", server.Refusal, StringComparison.Ordinal);
        Assert.False(server.Connected);
        Assert.False(client.Connected);
    }

    [Fact]
    public async Task A_client_whose_certificate_starts_tomorrow_is_refused_as_not_yet_valid()
    {
        var now = DateTimeOffset.UtcNow;
        _cluster.Pki.Issue("sink-early", now.AddDays(1), now.AddDays(30)).Dispose();

        var (server, _) = await TlsHandshake.RunAsync(Settings(_cluster, "source-1"), LoadWithoutRenewal(_cluster, "sink-early"));

        Assert.StartsWith("not valid before ", server.Refusal, StringComparison.Ordinal);
        Assert.False(server.Connected);
    }

    [Fact]
    public async Task A_server_from_another_cluster_is_refused_by_the_client()
    {
        var (server, client) = await TlsHandshake.RunAsync(Settings(_stranger, "source-1"), Settings(_cluster, "sink-1"));

        Assert.StartsWith("issued by another CA (", client.Refusal, StringComparison.Ordinal);
        Assert.False(client.Connected);
        Assert.False(server.Connected);
    }

    private static TlsSettings Settings(TempPki pki, string node) => pki.Node(node).ToTlsSettings();

    /// <summary>
    /// A node's files as they are: <see cref="ClusterPki.GetOrIssueNode"/> would renew an expired
    /// certificate where the CA key lives, so the stale pair is copied to a PKI without it.
    /// </summary>
    private static TlsSettings LoadWithoutRenewal(TempPki pki, string node)
    {
        var copy = Path.Combine(Path.GetDirectoryName(pki.Path)!, $"copy-{node}");
        Directory.CreateDirectory(Path.Combine(copy, ClusterPki.NodesDirectory));
        File.Copy(pki.Pki.CaCertificatePath, Path.Combine(copy, ClusterPki.CaCertificateFile));
        File.Copy(pki.Pki.NodeCertificatePath(node), Path.Combine(copy, ClusterPki.NodesDirectory, node + ".crt"));
        File.Copy(pki.Pki.NodeKeyPath(node), Path.Combine(copy, ClusterPki.NodesDirectory, node + ".key"));
        var stale = ClusterPki.Open(copy);
        var refusal = Assert.Throws<InvalidDataException>(() => stale.GetOrIssueNode(node));
        Assert.Contains("would be refused by its peers", refusal.Message, StringComparison.Ordinal);
        return stale.LoadNode(node).ToTlsSettings();
    }
}
