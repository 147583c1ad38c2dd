using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Security;

namespace StreamClone.Host.Commands;

/// <summary>
/// `pki init` and `pki issue`: the cluster CA and node certificates every connection's mutual TLS uses.
/// A node only needs ca.crt and its own nodes/NAME.{crt,key}; ca.key stays where certificates are issued.
/// </summary>
internal static class PkiCommand
{
    public static Command Create()
    {
        var command = new Command("pki", "The cluster's certificates: every connection is mutual TLS, and a peer is let in only with a certificate of this cluster's CA.");
        command.Subcommands.Add(CreateInit());
        command.Subcommands.Add(CreateIssue());
        return command;
    }

    private static Command CreateInit()
    {
        var output = new Option<string?>("--out") { Description = "Directory for the new PKI (created 0700). Default: $XDG_CONFIG_HOME/streamclone/pki or ~/.config/streamclone/pki." };
        var command = new Command("init", "Create a cluster CA (ECDSA P-256, 10 years) in a PKI directory; an existing CA is never replaced.") { output };
        command.SetAction(result =>
        {
            var pki = ClusterPki.Init(result.GetValue(output) ?? ClusterPki.DefaultDirectory());
            Console.WriteLine($"cluster CA created in {pki.Directory}");
            Console.WriteLine($"  {pki.CaCertificatePath}  {pki.CaCertificate.Subject}, valid until {Date(pki.CaCertificate.NotAfter)}, sha256 {Fingerprint(pki.CaCertificate)}");
            Console.WriteLine($"  {pki.CaKeyPath}  the CA's private key (0600): keep it where certificates are issued, copy only ca.crt to nodes");
            Console.WriteLine($"next: streamclone pki issue --name NODE --pki {pki.Directory}");
            return 0;
        });
        return command;
    }

    private static Command CreateIssue()
    {
        var name = new Option<string>("--name") { Description = "The node's name (a-z, 0-9, '.', '-'): its certificate's CN and DNS name, and how peers' logs call it.", Required = true };
        var pkiDirectory = new Option<string?>("--pki") { Description = "PKI directory holding the CA and its key. Default: the user's PKI, created on first use." };
        var days = new Option<int>("--days") { Description = "Days the certificate is valid (at most until the CA ends).", DefaultValueFactory = _ => (int)ClusterPki.DefaultNodeValidity.TotalDays };
        var command = new Command("issue", "Issue (or renew) a node's certificate, signed by the cluster CA, for TLS server and client use; a node with the same name is replaced.")
        {
            name, pkiDirectory, days,
        };
        command.SetAction(result =>
        {
            var nodeName = NodeName.Validate(result.GetValue(name));
            if (result.GetValue(days) is var validDays and (< 1 or > 36600))
            {
                throw new FormatException($"--days must be 1 to 36600, not {validDays}");
            }
            var pki = result.GetValue(pkiDirectory) is { } directory ? ClusterPki.Open(directory) : ClusterPki.OpenOrCreate(ClusterPki.DefaultDirectory());
            var replaced = File.Exists(pki.NodeCertificatePath(nodeName));
            using var certificate = pki.Issue(nodeName, TimeSpan.FromDays(result.GetValue(days)));
            Console.WriteLine($"{(replaced ? "renewed" : "issued")} node certificate '{nodeName}' (CA {pki.CaCertificate.Subject})");
            Console.WriteLine($"  {pki.NodeCertificatePath(nodeName)}  valid {Date(certificate.NotBefore)} to {Date(certificate.NotAfter)}, serial {certificate.SerialNumber}");
            Console.WriteLine($"  {pki.NodeKeyPath(nodeName)}  its private key (0600)");
            Console.WriteLine($"on node '{nodeName}': a PKI directory with ca.crt and these two files under nodes/, then --pki DIR --node {nodeName}");
            return 0;
        });
        return command;
    }

    private static string Date(DateTime local) => local.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private static string Fingerprint(X509Certificate2 certificate) => Convert.ToHexStringLower(SHA256.HashData(certificate.RawDataMemory.Span));
}
