using System.Buffers;
using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Security;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Security;

/// <summary>
/// A running source (a real process, mutual TLS on by default) against peers that are not ours: each
/// gets nothing, the refusal is logged with the peer's address and reason, and a good sink that comes
/// after all of them still receives an identical copy.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class TlsRefusalTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(3);

    /// <summary>Everything the server sent before it closed (empty when it sent nothing).</summary>
    private static async Task<byte[]> ReadUntilClosedAsync(Stream stream)
    {
        var received = new ArrayBufferWriter<byte>();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            while (true)
            {
                var n = await stream.ReadAsync(received.GetMemory(4096), deadline.Token);
                if (n == 0)
                {
                    break;
                }
                received.Advance(n);
            }
        }
        catch (IOException)
        {
            // A reset or a TLS alert: the server closed, which is what a refusal looks like.
        }
        return received.WrittenSpan.ToArray();
    }

    /// <summary>
    /// A TLS client that checks the source as a member would (it is ours) and shows <paramref name="certificate"/>
    /// (or none), then sends a Hello: everything the source sent back before it closed.
    /// </summary>
    private static async Task<byte[]> PresentAsync(int port, X509Certificate2? certificate)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", port);
        var cluster = ClusterPki.OpenOrCreate(ClusterPki.DefaultDirectory());
        await using var tls = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false,
            (_, presented, chain, errors) => cluster.Validator.Refuse(presented, chain, errors) is null);
        try
        {
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "source",
                ClientCertificates = certificate is null ? null : [certificate],
            });
            await tls.WriteAsync(HelloFrame());
            return await ReadUntilClosedAsync(tls);
        }
        catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException)
        {
            // The handshake itself was refused: nothing came back.
            return [];
        }
    }

    private static byte[] HelloFrame()
    {
        var output = new ArrayBufferWriter<byte>();
        new FrameWriter().Write(output, FrameType.Hello, new HelloMessage { Role = "sink", Lane = Lane.Bulk, SessionId = "plain-text-peer" }, []);
        return output.WrittenSpan.ToArray();
    }

    private static async Task<(int Exit, RunningProcess Sink)> RunSinkAsync(int port, string store, params string[] extra)
    {
        var sink = StreamCloneProcess.Start(["sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json", .. extra]);
        return (await sink.WaitAsync(Timeout), sink);
    }

    /// <summary>
    /// A copy of the test run's default PKI without the CA key, holding a node certificate that expired
    /// yesterday (without the CA key the node cannot renew it, as an operator's stale node could not).
    /// </summary>
    private static string ExpiredNodePki(TempDir dir, string name)
    {
        var defaultPki = ClusterPki.OpenOrCreate(ClusterPki.DefaultDirectory());
        var now = DateTimeOffset.UtcNow;
        using var expired = defaultPki.Issue(name, now.AddDays(-30), now.AddDays(-1));
        var copy = dir.File("expired-pki");
        Directory.CreateDirectory(Path.Combine(copy, ClusterPki.NodesDirectory));
        File.Copy(defaultPki.CaCertificatePath, Path.Combine(copy, ClusterPki.CaCertificateFile));
        File.Copy(defaultPki.NodeCertificatePath(name), Path.Combine(copy, ClusterPki.NodesDirectory, name + ".crt"));
        File.Copy(defaultPki.NodeKeyPath(name), Path.Combine(copy, ClusterPki.NodesDirectory, name + ".key"));
        return copy;
    }

    [Fact]
    public async Task Peers_outside_the_cluster_get_nothing_and_a_good_sink_still_gets_an_identical_copy()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 11);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1", "--log-level", "Information");
        await using var _ = source;

        // 1. A TLS client with no certificate.
        Assert.Empty(await PresentAsync(port, certificate: null));

        // 2. A plain-TCP client that sends a valid Hello in clear text.
        using (var plain = new TcpClient())
        {
            await plain.ConnectAsync("127.0.0.1", port);
            var stream = plain.GetStream();
            await stream.WriteAsync(HelloFrame());
            var got = await ReadUntilClosedAsync(stream);
            // Whatever comes back is not a frame of ours (a TLS alert at most): no MessagePack, no data.
            Assert.False(got.Length >= 4 && got.AsSpan(0, 4).SequenceEqual(FrameMagic()), "a plain-text peer was answered with a frame");
        }

        // 3. A sink whose certificate comes from another CA: exits non-zero with one clear line.
        var otherPki = dir.File("other-pki");
        await using (var init = StreamCloneProcess.Start("pki", "init", "--out", otherPki))
        {
            Assert.Equal(0, await init.WaitAsync(Timeout));
        }
        await using (var issue = StreamCloneProcess.Start("pki", "issue", "--pki", otherPki, "--name", "stranger"))
        {
            Assert.Equal(0, await issue.WaitAsync(Timeout));
        }
        var (strangerExit, stranger) = await RunSinkAsync(port, dir.File("stranger-store"), "--pki", otherPki, "--node", "stranger");
        await using (stranger)
        {
            Assert.NotEqual(0, strangerExit);
            Assert.Single(stranger.FailureLines);
        }

        // 4. A certificate of our own CA that has expired: a sink holding one exits with one line, and a
        //    client that presents it anyway gets nothing.
        var expiredPki = ExpiredNodePki(dir, "expired-node");
        var (expiredExit, expired) = await RunSinkAsync(port, dir.File("expired-store"), "--pki", expiredPki, "--node", "expired-node");
        await using (expired)
        {
            Assert.NotEqual(0, expiredExit);
            Assert.Single(expired.FailureLines);
        }
        using (var expiredCertificate = X509Certificate2.CreateFromPemFile(
            Path.Combine(expiredPki, ClusterPki.NodesDirectory, "expired-node.crt"), Path.Combine(expiredPki, ClusterPki.NodesDirectory, "expired-node.key")))
        {
            Assert.Empty(await PresentAsync(port, expiredCertificate));
        }

        // 5. After all of them, a good sink (the default PKI) receives an identical copy.
        var (goodExit, good) = await RunSinkAsync(port, dir.File("store"));
        await using var __ = good;
        Assert.True(goodExit == 0, good.Stderr);
        using var summary = JsonDocument.Parse(good.LastLine);
        var copy = summary.RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(copy));
        Assert.Equal(0, await source.WaitAsync(Timeout));

        // Each refusal was logged with the peer's address and its reason; nothing of theirs counted as a session.
        var refusals = source.StderrLines.Where(l => l.Contains("refused", StringComparison.OrdinalIgnoreCase)).ToList();
        var log = string.Join('\n', source.StderrLines);
        Assert.True(refusals.Any(l => l.Contains("127.0.0.1:", StringComparison.Ordinal) && l.Contains("no certificate", StringComparison.OrdinalIgnoreCase)), log);
        Assert.True(refusals.Any(l => l.Contains("another CA", StringComparison.OrdinalIgnoreCase)), log);
        Assert.True(refusals.Any(l => l.Contains("expired", StringComparison.OrdinalIgnoreCase)), log);
        Assert.True(refusals.Any(l => l.Contains("spoke plain TCP", StringComparison.Ordinal)), log);
        Assert.Equal(4, refusals.Count);
    }

    private static byte[] FrameMagic() => HelloFrame()[..4];
}
