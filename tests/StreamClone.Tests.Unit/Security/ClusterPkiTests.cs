using System.Runtime.Versioning;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Security;

namespace StreamClone.Tests.Unit.Security;

/// <summary>The PKI directory: what it creates, with which modes, what it refuses, and many processes' first use at once.</summary>
[SupportedOSPlatform("linux")]
public sealed class ClusterPkiTests : IDisposable
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    private readonly TempPki _temp = new(create: false);

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Keys_are_0600_and_directories_0700_from_their_creation()
    {
        var node = NodeCredentials.OpenOrCreate(_temp.Path, "node-a");

        Assert.Equal(PrivateDirectory, File.GetUnixFileMode(_temp.Path));
        Assert.Equal(PrivateDirectory, File.GetUnixFileMode(Path.Combine(_temp.Path, ClusterPki.NodesDirectory)));
        Assert.Equal(Private, File.GetUnixFileMode(Path.Combine(_temp.Path, ClusterPki.CaKeyFile)));
        Assert.Equal(Private, File.GetUnixFileMode(Path.Combine(_temp.Path, ClusterPki.NodesDirectory, "node-a.key")));
        // Nothing half-written is left behind.
        Assert.DoesNotContain(Directory.EnumerateFiles(_temp.Path, "*", SearchOption.AllDirectories), f => f.EndsWith(".tmp", StringComparison.Ordinal));
        Assert.Equal("node-a", node.Name);
        Assert.True(node.Certificate.HasPrivateKey);
    }

    [Fact]
    public void A_node_certificate_is_a_CA_signed_server_and_client_certificate_named_after_the_node()
    {
        var pki = ClusterPki.Init(_temp.Path);
        using var certificate = pki.Issue("sink-7", TimeSpan.FromDays(10));

        Assert.Equal("CN=sink-7", certificate.Subject);
        Assert.Equal(pki.CaCertificate.Subject, certificate.Issuer);
        var names = certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Equal(["sink-7"], names.EnumerateDnsNames());
        var usages = certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value);
        Assert.Equal([ClusterCertificateValidator.ServerAuthOid, ClusterCertificateValidator.ClientAuthOid], usages);
        Assert.False(certificate.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        Assert.True(pki.CaCertificate.Extensions.OfType<X509BasicConstraintsExtension>().Single().CertificateAuthority);
        Assert.Equal(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, pki.CaCertificate.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages);
        using (var key = certificate.GetECDsaPublicKey())
        {
            Assert.Equal(256, key!.KeySize);
        }
        Assert.Null(pki.Validator.Check(certificate));
        // 16 random octets, positive: two issues never share a serial.
        using var second = pki.Issue("sink-8", TimeSpan.FromDays(10));
        Assert.NotEqual(certificate.SerialNumber, second.SerialNumber);
        Assert.InRange(certificate.SerialNumberBytes.Length, 16, 17);
    }

    [Fact]
    public void Init_refuses_to_replace_an_existing_CA()
    {
        var first = ClusterPki.Init(_temp.Path);
        var before = File.ReadAllBytes(first.CaCertificatePath);

        var refused = Assert.Throws<IOException>(() => ClusterPki.Init(_temp.Path));

        Assert.Contains("already holds a cluster CA", refused.Message, StringComparison.Ordinal);
        Assert.Equal(before, File.ReadAllBytes(first.CaCertificatePath));
    }

    [Fact]
    public void Opening_a_directory_without_a_CA_names_the_command_that_creates_one()
    {
        Directory.CreateDirectory(_temp.Path);

        var refused = Assert.Throws<FileNotFoundException>(() => NodeCredentials.Open(_temp.Path, "node-a"));

        Assert.Contains("streamclone pki init --out", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("../evil")]
    [InlineData("a/b")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("-node")]
    [InlineData("node.")]
    [InlineData("a..b")]
    [InlineData("Node")]
    [InlineData("node a")]
    [InlineData("node\n")]
    [InlineData("CN=x,O=y")]
    [InlineData("nødé")]
    public void Bad_node_names_are_refused_before_any_file_is_touched(string name)
    {
        var pki = ClusterPki.Init(_temp.Path);

        Assert.NotNull(NodeName.Problem(name));
        Assert.Throws<FormatException>(() => pki.Issue(name, TimeSpan.FromDays(1)));
        Assert.Throws<FormatException>(() => pki.GetOrIssueNode(name));
        Assert.False(Directory.Exists(Path.Combine(_temp.Path, ClusterPki.NodesDirectory)));
    }

    [Fact]
    public void Names_of_63_characters_pass_and_64_do_not()
    {
        Assert.Null(NodeName.Problem(new string('a', 63)));
        Assert.NotNull(NodeName.Problem(new string('a', 64)));
        Assert.Null(NodeName.Problem("relay-2.rack-3"));
    }

    [Theory]
    [InlineData("My_Host", "my-host")]
    [InlineData("web01.example.com", "web01.example.com")]
    [InlineData("-x..y-", "x.y")]
    [InlineData("___", "node")]
    [InlineData("", "node")]
    public void Host_names_become_valid_node_names(string hostName, string expected)
    {
        Assert.Equal(expected, NodeName.FromHostName(hostName));
        Assert.Null(NodeName.Problem(NodeName.FromHostName(new string('h', 200))));
    }

    [Fact]
    public void Many_first_uses_at_once_make_one_CA_that_all_of_them_use()
    {
        const int Nodes = 8;
        using var start = new Barrier(Nodes);
        var results = new NodeCredentials[Nodes];
        var threads = Enumerable.Range(0, Nodes).Select(i => new Thread(() =>
        {
            start.SignalAndWait(TestContext.Current.CancellationToken);
            results[i] = NodeCredentials.OpenOrCreate(_temp.Path, $"node-{i}");
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        using var onDisk = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(_temp.Path, ClusterPki.CaCertificateFile));
        Assert.All(results, r => Assert.Equal(onDisk.Thumbprint, r.ClusterCa.Thumbprint));
        // Every node's certificate is accepted by every other node.
        Assert.All(results, r => Assert.All(results, other => Assert.Null(other.Validator.Check(r.Certificate))));
        Assert.Empty(Directory.EnumerateFiles(_temp.Path, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void A_node_private_key_others_can_read_is_refused()
    {
        var pki = ClusterPki.Init(_temp.Path);
        pki.GetOrIssueNode("node-a");
        File.SetUnixFileMode(pki.NodeKeyPath("node-a"), Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

        var refused = Assert.Throws<UnauthorizedAccessException>(() => pki.GetOrIssueNode("node-a"));

        Assert.Contains("chmod 600", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_PKI_directory_others_can_write_is_refused()
    {
        ClusterPki.Init(_temp.Path);
        File.SetUnixFileMode(_temp.Path, PrivateDirectory | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);

        Assert.Throws<UnauthorizedAccessException>(() => ClusterPki.Open(_temp.Path));
    }

    [Fact]
    public void A_nodes_own_expired_certificate_is_renewed_where_the_CA_key_is()
    {
        var pki = ClusterPki.Init(_temp.Path);
        var now = DateTimeOffset.UtcNow;
        using var expired = pki.Issue("node-a", now.AddDays(-30), now.AddDays(-1));
        Assert.Equal(PeerRefusalKind.Expired, pki.Validator.Check(expired)?.Kind);

        var renewed = pki.GetOrIssueNode("node-a");

        Assert.NotEqual(expired.SerialNumber, renewed.Certificate.SerialNumber);
        Assert.Null(pki.Validator.Check(renewed.Certificate));
    }

    [Fact]
    public void Without_the_CA_key_a_missing_node_certificate_names_the_command_that_issues_it()
    {
        var pki = ClusterPki.Init(_temp.Path);
        File.Delete(pki.CaKeyPath);

        var refused = Assert.Throws<FileNotFoundException>(() => pki.GetOrIssueNode("node-b"));

        Assert.Contains("pki issue --name node-b", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_certificate_outliving_the_CA_is_cut_to_the_CAs_end()
    {
        var pki = ClusterPki.Init(_temp.Path);

        using var certificate = pki.Issue("node-a", TimeSpan.FromDays(365 * 50));

        Assert.Equal(pki.CaCertificate.NotAfter, certificate.NotAfter);
    }
}
