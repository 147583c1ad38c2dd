using System.Net;
using System.Net.Sockets;
using StreamClone.Perf.Faults;

namespace StreamClone.Tests.Integration.Faults;

/// <summary>The fault proxy itself, over real loopback sockets: what it says it cuts, it cuts, on both sides.</summary>
public sealed class FaultProxyTests : IDisposable
{
    // A guard, not a timing: each wait below ends in milliseconds when the proxy works.
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private readonly Socket _server = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

    public FaultProxyTests()
    {
        _server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _server.Listen(16);
    }

    private IPEndPoint ServerEndPoint => (IPEndPoint)_server.LocalEndPoint!;

    public void Dispose() => _server.Dispose();

    private static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint);
        return socket;
    }

    /// <summary>Reads until the peer's FIN or RST; returns the bytes read, or throws if the connection stays open past the guard.</summary>
    private static async Task<int> ReadToEndAsync(Socket socket)
    {
        using var guard = new CancellationTokenSource(Guard);
        var buffer = new byte[64 << 10];
        var total = 0;
        try
        {
            while (true)
            {
                var read = await socket.ReceiveAsync(buffer, SocketFlags.None, guard.Token);
                if (read == 0)
                {
                    return total;
                }
                total += read;
            }
        }
        catch (SocketException)
        {
            return total;
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException("the connection was still open: the proxy did not cut it");
        }
    }

    /// <summary>
    /// Connects and expects the proxy to close the connection without sending a byte. The proxy's reset can
    /// land before the kernel reports the connect as done, and then the connect itself fails with
    /// ECONNRESET: that is the same observation (the client was closed), seen one step earlier.
    /// </summary>
    private static async Task AssertClosedByProxyAsync(IPEndPoint proxy)
    {
        Socket orphan;
        try
        {
            orphan = await ConnectAsync(proxy);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return;
        }
        using (orphan)
        {
            Assert.Equal(0, await ReadToEndAsync(orphan));
        }
    }

    private static async Task ExchangeAsync(Socket client, Socket server)
    {
        await client.SendAsync(new byte[] { 42 });
        var one = new byte[1];
        using var guard = new CancellationTokenSource(Guard);
        Assert.Equal(1, await server.ReceiveAsync(one, SocketFlags.None, guard.Token));
        Assert.Equal(42, one[0]);
    }

    [Fact]
    public async Task CutAll_closes_every_live_connection_on_both_sides_and_the_proxy_serves_on()
    {
        await using var proxy = new FaultProxy(ServerEndPoint);
        var pairs = new List<(Socket Client, Socket Server)>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var client = await ConnectAsync(proxy.EndPoint);
                var server = await _server.AcceptAsync();
                pairs.Add((client, server));
                await ExchangeAsync(client, server);
            }

            proxy.CutAll();

            foreach (var (client, server) in pairs)
            {
                await ReadToEndAsync(client);
                await ReadToEndAsync(server);
            }
            Assert.All(proxy.History, c => Assert.True(c.IsClosed));

            using var again = await ConnectAsync(proxy.EndPoint);
            using var accepted = await _server.AcceptAsync();
            await ExchangeAsync(again, accepted);
        }
        finally
        {
            foreach (var (client, server) in pairs)
            {
                client.Dispose();
                server.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_client_arriving_while_the_target_is_down_is_closed_and_the_proxy_accepts_after()
    {
        // A port nothing listens on: the source was killed. The socket stays bound (and refuses connections)
        // for the whole test: released, its port could be handed to a listener of a test running in parallel.
        using var down = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        down.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var deadEndPoint = (IPEndPoint)down.LocalEndPoint!;
        await using var proxy = new FaultProxy(deadEndPoint);

        await AssertClosedByProxyAsync(proxy.EndPoint);

        // The source is back on another port.
        proxy.Target = ServerEndPoint;
        using var client = await ConnectAsync(proxy.EndPoint);
        using var server = await _server.AcceptAsync();
        await ExchangeAsync(client, server);
        Assert.Equal(2, proxy.Connections);
    }

    [Fact]
    public async Task A_stalled_direction_forwards_exactly_up_to_its_offset_until_the_connection_is_cut()
    {
        await using var proxy = new FaultProxy(ServerEndPoint);
        const int StallAt = 100_000;
        proxy.Inject(connection: 1, ProxyDirection.Downstream, ProxyFault.StallAfter(StallAt));
        using var client = await ConnectAsync(proxy.EndPoint);
        using var server = await _server.AcceptAsync();

        // The server writes far more than the stall point; its sends block once the proxy stops reading.
        using var stopWriting = new CancellationTokenSource();
        var writing = Task.Run(async () =>
        {
            var block = new byte[64 << 10];
            try
            {
                while (true)
                {
                    await server.SendAsync(block, SocketFlags.None, stopWriting.Token);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException)
            {
            }
        });
        await proxy.WhenBytesAsync(1, ProxyDirection.Downstream, StallAt).WaitAsync(Guard);
        Assert.True(proxy.History[0].Faults[0].Applied);

        proxy.CutAll(reset: false);
        Assert.Equal(StallAt, await ReadToEndAsync(client));
        await stopWriting.CancelAsync();
        await writing.WaitAsync(Guard);
    }
}
