using System.Buffers;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Tests.Unit.Transport;

/// <summary>
/// Mutual TLS over loopback sockets, with certificates made inline: peers of our CA complete the session
/// handshake and know each other by their certificates' names; a peer without a certificate, with one from
/// another CA, with an expired one, or speaking plain TCP, gets no frame at all, the refusal is logged with
/// its address and reason, and the listener goes on serving the next good peer.
/// </summary>
public sealed class TlsTransportTests : IDisposable
{
    private static readonly TransportOptions Options = TransportOptions.Default with { HandshakeTimeout = TimeSpan.FromSeconds(10) };
    private readonly TestPki _pki = new("streamclone-test-ca");
    private readonly TestPki _otherCa = new("another-ca");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose()
    {
        _pki.Dispose();
        _otherCa.Dispose();
    }

    /// <summary>A listener whose handler runs the server handshake and reports each result.</summary>
    private sealed class Server : IAsyncDisposable
    {
        private readonly ConnectionListener _listener;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _running;

        public Server(TlsSettings tls)
        {
            _listener = new ConnectionListener(Options, tls, maxPending: 8, Log);
            EndPoint = _listener.Listen(new IPEndPoint(IPAddress.Loopback, 0));
            _running = _listener.RunAsync(async (accepted, ct) =>
            {
                try
                {
                    Handshakes.Writer.TryWrite(await SessionHandshake.ServerAsync(accepted.Connection, NodeRoles.Source, "src", tls, null, ct));
                    // Held open until the client is done with it (it reads our Hello after we sent it).
                    await accepted.Connection.ReceiveAsync(_ => ValueTask.FromResult(true), ct);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    await SessionFailure.CloseAsync(accepted.Connection, ex);
                }
            }, _stop.Token);
        }

        public LogLines Log { get; } = new();

        public IPEndPoint EndPoint { get; }

        public Channel<HandshakeResult> Handshakes { get; } = Channel.CreateUnbounded<HandshakeResult>();

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _running;
            await _listener.DisposeAsync();
            _stop.Dispose();
        }
    }

    /// <summary>A sink-node client of our CA completes the handshake; both sides see the other's certificate name.</summary>
    private async Task AssertGoodClientAsync(Server server)
    {
        await using var connection = await Connector.ConnectAsync(server.EndPoint, Lane.Bulk, Options, _pki.Node("sink-node"), NullLogger.Instance, Ct);
        var asClient = await SessionHandshake.ClientAsync(connection, NodeRoles.Sink, Lane.Bulk, "good-session", "label-ignored", _pki.Node("x"), Ct);
        var asServer = await server.Handshakes.Reader.ReadAsync(Ct).AsTask().WaitAsync(TimeSpan.FromSeconds(30), Ct);

        Assert.Equal(new PeerIdentity("source-node", true, server.EndPoint.ToString()), asClient.Peer);
        Assert.Equal("sink-node", asServer.Peer.Name);
        Assert.True(asServer.Peer.Verified);
        Assert.StartsWith("sink-node (127.0.0.1:", asServer.Peer.ToString(), StringComparison.Ordinal);
        Assert.True(connection.BytesSent > 0 && connection.BytesReceived > 0);
    }

    /// <summary>Everything a peer gets back over a raw socket until the listener closes it (bytes after the TLS layer, if any).</summary>
    private static async Task<int> DrainAsync(Stream stream)
    {
        var total = 0;
        var buffer = new byte[4096];
        using var guard = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, guard.Token)) > 0)
            {
                total += read;
            }
        }
        catch (IOException)
        {
            // Reset or TLS alert: closed all the same.
        }
        return total;
    }

    private static byte[] HelloFrame()
    {
        var output = new ArrayBufferWriter<byte>();
        new FrameWriter().Write(output, FrameType.Hello, new HelloMessage { Role = NodeRoles.Sink, SessionId = "sneaky" }, []);
        return output.WrittenSpan.ToArray();
    }

    [Fact]
    public async Task Peers_of_one_CA_complete_the_handshake_and_know_each_other_by_certificate_name()
    {
        await using var server = new Server(_pki.Node("source-node"));
        await AssertGoodClientAsync(server);
        await AssertGoodClientAsync(server);
    }

    [Fact]
    public async Task A_client_without_a_certificate_gets_no_frame_and_the_listener_serves_on()
    {
        await using var server = new Server(_pki.Node("source-node"));
        using (var client = new TcpClient(AddressFamily.InterNetwork))
        {
            await client.ConnectAsync(server.EndPoint, Ct);
            var local = client.Client.LocalEndPoint!.ToString()!;
            await using var tls = new SslStream(client.GetStream());
            var rule = _pki.Node("x").PeerValidator;
            var received = 0;
            try
            {
                await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = "127.0.0.1",
                    // It trusts our source; it only lacks a certificate of its own.
                    RemoteCertificateValidationCallback = (_, certificate, chain, errors) => rule.Refuse(certificate, chain, errors) is null,
                }, Ct);
                // TLS 1.3: the client may finish before the server judged it; whatever it sends, nothing comes back.
                await tls.WriteAsync(HelloFrame(), Ct);
                received = await DrainAsync(tls);
            }
            catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException)
            {
            }
            Assert.Equal(0, received);
            Assert.Equal($"Refused {local}: no certificate", await server.Log.NextAsync(local, Ct));
        }
        await AssertGoodClientAsync(server);
    }

    [Theory]
    [InlineData("another CA")]
    [InlineData("expired")]
    public async Task A_client_with_a_certificate_we_do_not_accept_gets_no_frame_and_the_listener_serves_on(string kind)
    {
        await using var server = new Server(_pki.Node("source-node"));
        var certificate = kind == "expired"
            ? _pki.Issue("stale-node", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1))
            : _otherCa.Issue("intruder");
        var failed = await Record.ExceptionAsync(async () =>
        {
            await using var connection = await Connector.ConnectAsync(server.EndPoint, Lane.Bulk, Options, _pki.Trusting(certificate), NullLogger.Instance, Ct);
            await SessionHandshake.ClientAsync(connection, NodeRoles.Sink, Lane.Bulk, "s", "n", null, Ct);
        });

        // Closed after the TLS handshake: no Error frame (that would be a ProtocolViolationException), no Hello.
        Assert.NotNull(failed);
        Assert.IsNotType<ProtocolViolationException>(failed);
        var line = await server.Log.NextAsync("Refused 127.0.0.1:", Ct);
        Assert.EndsWith(kind == "expired" ? $": expired on {certificate.NotAfter.ToUniversalTime():yyyy-MM-dd HH:mm} UTC" : ": issued by another CA", line, StringComparison.Ordinal);
        await AssertGoodClientAsync(server);
    }

    [Fact]
    public async Task A_plain_TCP_Hello_to_a_TLS_listener_gets_nothing_and_the_listener_serves_on()
    {
        await using var server = new Server(_pki.Node("source-node"));
        using (var client = new TcpClient(AddressFamily.InterNetwork))
        {
            await client.ConnectAsync(server.EndPoint, Ct);
            var local = client.Client.LocalEndPoint!.ToString()!;
            var stream = client.GetStream();
            await stream.WriteAsync(HelloFrame(), Ct);
            Assert.Equal(0, await DrainAsync(stream));
            Assert.StartsWith($"Refused {local}: ", await server.Log.NextAsync(local, Ct), StringComparison.Ordinal);
        }
        await AssertGoodClientAsync(server);
    }

    [Fact]
    public async Task A_client_refuses_a_server_from_another_CA_before_sending_anything()
    {
        await using var server = new Server(_pki.Trusting(_otherCa.Issue("impostor")));
        var refused = await Assert.ThrowsAsync<System.Security.Authentication.AuthenticationException>(() =>
            Connector.ConnectAsync(server.EndPoint, Lane.Bulk, Options, _pki.Node("sink-node"), NullLogger.Instance, Ct));
        Assert.Equal($"refused {server.EndPoint}: issued by another CA", refused.Message);
        Assert.Equal(CloseKind.Refused, SessionFailure.Classify(refused).Kind);
    }

    [Fact]
    public async Task A_snapshot_streams_source_to_sink_over_mutual_TLS_and_a_plain_sink_is_refused()
    {
        using var dir = new TempDir();
        var image = dir.File("mem.img");
        var bytes = new byte[6 << 20];
        new Random(7).NextBytes(bytes.AsSpan(0, 2 << 20));
        await File.WriteAllBytesAsync(image, bytes, Ct);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "tls-snapshot");
        var sourceLog = new LogLines();
        await using var server = new SourceServer(input, new SourceOptions { Tls = _pki.Node("source-node") }, Options, sourceLog);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var ended = new TaskCompletionSource<DownstreamSessionStats>(TaskCreationOptions.RunContinuationsAsynchronously);
        server.SessionEnded += stats => ended.TrySetResult(stats);
        var serving = server.RunAsync(stop.Token);

        using (var plainStore = ChunkStore.Open(dir.File("plain-store"), NullLogger.Instance))
        {
            var plain = await Record.ExceptionAsync(() => UpstreamSession.ConnectAsync(endPoint, plainStore, new UpstreamOptions(), Options, NullLogger.Instance, Ct));
            Assert.True(plain is EndOfStreamException or IOException, plain?.ToString());
            await sourceLog.NextAsync("Refused 127.0.0.1:", Ct);
        }

        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using (var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions { Tls = _pki.Node("sink-node") }, Options, NullLogger.Instance, Ct))
        {
            Assert.Equal("source-node", session.Source.Name);
            Assert.True(session.Source.Verified);
            await session.RunAsync();
            Assert.Equal(CloseKind.Completed, session.CloseReason!.Kind);
            Assert.Equal(bytes, await File.ReadAllBytesAsync(session.Snapshot.GetObjectPath(0), Ct));
            // TLS records and handshakes cost bytes on the wire beyond the frames: counted at the socket.
            Assert.True(session.WireBytes > 2 << 20);
        }
        var stats = await ended.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.True(stats.Completed, stats.Error);
        Assert.StartsWith("sink-node (127.0.0.1:", stats.Peer, StringComparison.Ordinal);
        Assert.Equal(CloseKind.Completed, stats.CloseReason!.Kind);

        await stop.CancelAsync();
        await serving;
    }
}
