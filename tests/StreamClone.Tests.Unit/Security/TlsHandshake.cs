using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Transport;

namespace StreamClone.Tests.Unit.Security;

/// <summary>What one end of a handshake saw: whether the connection carried a byte each way, why it refused its peer, whom it talked to.</summary>
internal sealed record HandshakeSide(bool Connected, string? Refusal, string? PeerName, Exception? Error);

/// <summary>
/// A real SslStream handshake over a loopback TCP pair, with options built from <see cref="TlsSettings"/>
/// the way the transport builds them: the server requires a client certificate, and both ends hand
/// the peer's certificate to <see cref="IPeerCertificateValidator.Refuse"/>. After the handshake each
/// end sends one byte and reads the other's, because under TLS 1.3 a client finishes its handshake
/// before the server has judged the client's certificate: a refused client learns it on its first read.
/// </summary>
internal static class TlsHandshake
{
    public static async Task<(HandshakeSide Server, HandshakeSide Client)> RunAsync(
        TlsSettings server, TlsSettings client, bool clientPresentsCertificate = true)
    {
        var ct = TestContext.Current.CancellationToken;
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var clientSocket = new TcpClient();
        var connect = clientSocket.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port, ct).AsTask();
        using var accepted = await listener.AcceptTcpClientAsync(ct);
        await connect;

        string? serverRefusal = null;
        var serverOptions = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = SslStreamCertificateContext.Create(server.Certificate, server.Chain, offline: true),
            ClientCertificateRequired = true,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
            {
                serverRefusal = server.PeerValidator.Refuse(certificate, chain, errors);
                return serverRefusal is null;
            },
        };
        string? clientRefusal = null;
        var clientOptions = new SslClientAuthenticationOptions
        {
            // An address, as a sink dials one: the server's certificate names a node, not 127.0.0.1.
            TargetHost = "127.0.0.1",
            ClientCertificateContext = clientPresentsCertificate ? SslStreamCertificateContext.Create(client.Certificate, client.Chain, offline: true) : null,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
            {
                clientRefusal = client.PeerValidator.Refuse(certificate, chain, errors);
                return clientRefusal is null;
            },
        };
        var serverSide = RunSideAsync(new SslStream(accepted.GetStream()), s => s.AuthenticateAsServerAsync(serverOptions, ct), server.PeerValidator, 0x5A, ct);
        var clientSide = RunSideAsync(new SslStream(clientSocket.GetStream()), s => s.AuthenticateAsClientAsync(clientOptions, ct), client.PeerValidator, 0xC1, ct);
        var (serverConnected, serverPeer, serverError) = await serverSide;
        var (clientConnected, clientPeer, clientError) = await clientSide;
        return (new HandshakeSide(serverConnected, serverRefusal, serverPeer, serverError),
            new HandshakeSide(clientConnected, clientRefusal, clientPeer, clientError));
    }

    private static async Task<(bool Connected, string? PeerName, Exception? Error)> RunSideAsync(
        SslStream stream, Func<SslStream, Task> authenticate, IPeerCertificateValidator validator, byte mine, CancellationToken ct)
    {
        // Disposed as soon as this side is done, success or not: the other side's read then ends
        // instead of waiting for a byte that never comes.
        await using (stream)
        {
            try
            {
                await authenticate(stream);
                var peerName = stream.RemoteCertificate is { } certificate ? validator.PeerName(certificate) : null;
                await stream.WriteAsync(new[] { mine }, ct);
                var buffer = new byte[1];
                var read = await stream.ReadAsync(buffer, ct);
                return read == 1 ? (true, peerName, null) : (false, peerName, new EndOfStreamException("the peer closed the connection"));
            }
            catch (Exception ex) when (ex is AuthenticationException or IOException)
            {
                return (false, null, ex);
            }
        }
    }
}
