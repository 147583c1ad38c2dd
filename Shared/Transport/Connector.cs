using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;
using Pipelines.Sockets.Unofficial;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>
/// The client side of every role (a sink, a relay upstream): connects one lane, over TLS when the node
/// has <see cref="TlsSettings"/>, else plain TCP. The TLS handshake (mutual: we show our certificate and
/// judge the peer's with the node's validator) runs within <see cref="TransportOptions.HandshakeTimeout"/>;
/// the frame handshake (<see cref="SessionHandshake"/>) follows on the returned connection.
/// </summary>
public static class Connector
{
    public static async Task<FrameConnection> ConnectAsync(EndPoint endPoint, Lane lane, TransportOptions options, TlsSettings? tls, ILogger logger, CancellationToken ct)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            SocketConnection.SetRecommendedClientOptions(socket);
            TransportSockets.Tune(socket, lane, options);
            await socket.ConnectAsync(endPoint, ct);
            if (tls is null)
            {
                return new FrameConnection(new SocketTransport(socket, options), lane, options, logger);
            }
            var transport = await AuthenticateAsync(socket, endPoint, options, tls, ct);
            return new FrameConnection(transport, lane, options, logger);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Logs once per node (call it where the node starts) that it runs without TLS.</summary>
    public static void WarnIfInsecure(TlsSettings? tls, ILogger logger, string where)
    {
        if (tls is null)
        {
            SharedLog.Insecure(logger, where);
        }
    }

    private static async Task<TlsTransport> AuthenticateAsync(Socket socket, EndPoint endPoint, TransportOptions options, TlsSettings tls, CancellationToken ct)
    {
        var wire = new CountingStream(new NetworkStream(socket, ownsSocket: false));
        var stream = new SslStream(wire, leaveInnerStreamOpen: false);
        var authentication = new TlsAuthentication(tls);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(options.HandshakeTimeout);
        try
        {
            await stream.AuthenticateAsClientAsync(authentication.ClientOptions(HostOf(endPoint)), deadline.Token);
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException
            || (ex is OperationCanceledException && !ct.IsCancellationRequested))
        {
            await stream.DisposeAsync();
            // Not a protocol violation of ours: the peer is not who the PKI says it must be, or speaks no TLS.
            throw new AuthenticationException($"refused {endPoint}: {authentication.Describe(ex)}", ex);
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
        return new TlsTransport(socket, wire, stream, options);
    }

    private static string HostOf(EndPoint endPoint) => endPoint switch
    {
        IPEndPoint ip => ip.Address.ToString(),
        DnsEndPoint dns => dns.Host,
        _ => endPoint.ToString() ?? "",
    };
}
