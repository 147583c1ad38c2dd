using System.Runtime.Versioning;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Security;

namespace StreamClone.Tests.Integration.Security;

/// <summary>`streamclone pki` as processes: first use of a default PKI by several at once, and init's refusal to replace a CA.</summary>
[SupportedOSPlatform("linux")]
public sealed class PkiProcessTests
{
    [Fact]
    public async Task Processes_creating_the_default_PKI_at_once_share_one_CA()
    {
        using var dir = new TempDir();
        var environment = new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = dir.File("config") };
        const int Processes = 4;

        var issuers = Enumerable.Range(0, Processes).Select(i => StreamCloneProcess.Start(environment, "pki", "issue", "--name", $"node-{i}")).ToList();
        foreach (var issuer in issuers)
        {
            await using (issuer)
            {
                var exit = await issuer.WaitAsync(TimeSpan.FromMinutes(2));
                Assert.True(exit == 0, $"exit {exit}: {issuer.Stderr}");
            }
        }

        var pki = ClusterPki.Open(Path.Combine(dir.File("config"), "streamclone", "pki"));
        for (var i = 0; i < Processes; i++)
        {
            using var node = X509CertificateLoader.LoadCertificateFromFile(pki.NodeCertificatePath($"node-{i}"));
            Assert.Null(pki.Validator.Check(node));
        }
        Assert.Empty(Directory.EnumerateFiles(pki.Directory, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Init_refuses_an_existing_CA_with_one_line_and_leaves_it_as_it_was()
    {
        using var dir = new TempDir();
        var pkiPath = dir.File("pki");
        await using (var first = StreamCloneProcess.Start("pki", "init", "--out", pkiPath))
        {
            Assert.Equal(0, await first.WaitAsync(TimeSpan.FromMinutes(2)));
            Assert.Contains("cluster CA created in " + pkiPath, first.Stdout, StringComparison.Ordinal);
        }
        var before = await File.ReadAllBytesAsync(Path.Combine(pkiPath, ClusterPki.CaCertificateFile), TestContext.Current.CancellationToken);

        await using var second = StreamCloneProcess.Start("pki", "init", "--out", pkiPath);

        Assert.Equal(1, await second.WaitAsync(TimeSpan.FromMinutes(2)));
        var line = Assert.Single(second.FailureLines);
        Assert.Contains("already holds a cluster CA", line, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllBytesAsync(Path.Combine(pkiPath, ClusterPki.CaCertificateFile), TestContext.Current.CancellationToken));
    }
}
