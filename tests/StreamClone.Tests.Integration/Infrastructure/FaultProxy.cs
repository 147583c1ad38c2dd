using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>
/// A loopback TCP proxy between sink and source (after NATS.Net's NatsProxy, at byte level): it can
/// throttle, flip one byte of the downstream (source → sink) stream of the first connection, or
/// cut every connection. Faults are set before the bytes pass, so tests need no sleeps to aim them.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly IPEndPoint _target;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _sockets = [];
    private readonly Task _accept;
    private int _connections;

    public FaultProxy(IPEndPoint target)
    {
        _target = target;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(16);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _accept = AcceptAsync();
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>Downstream rate per connection, bytes per second; 0 = unlimited.</summary>
    public long BytesPerSecond { get; set; }

    /// <summary>Flip (xor 0xFF) the byte at this offset of the first connection's downstream stream.</summary>
    public long? FlipDownstreamByteAt { get; set; }

    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Downstream bytes forwarded on the first connection so far.</summary>
    public long FirstConnectionDownstreamBytes => Interlocked.Read(ref _firstDownstream);

    private long _firstDownstream;

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptAsync(_stop.Token);
                var upstream = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                client.NoDelay = true;
                await upstream.ConnectAsync(_target, _stop.Token);
                var number = Interlocked.Increment(ref _connections);
                lock (_sockets)
                {
                    _sockets.Add(client);
                    _sockets.Add(upstream);
                }
                _ = PumpAsync(client, upstream, downstream: false, number);
                _ = PumpAsync(upstream, client, downstream: true, number);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task PumpAsync(Socket from, Socket to, bool downstream, int connection)
    {
        var buffer = new byte[16 * 1024];
        long total = 0;
        var clock = Stopwatch.StartNew();
        try
        {
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, _stop.Token);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }
                if (downstream && connection == 1 && FlipDownstreamByteAt is { } at && at >= total && at < total + read)
                {
                    buffer[at - total] ^= 0xFF;
                }
                total += read;
                if (downstream && connection == 1)
                {
                    Interlocked.Add(ref _firstDownstream, read);
                }
                await to.SendAsync(buffer.AsMemory(0, read), _stop.Token);
                if (downstream && BytesPerSecond > 0)
                {
                    var due = TimeSpan.FromSeconds((double)total / BytesPerSecond);
                    if (due > clock.Elapsed)
                    {
                        await Task.Delay(due - clock.Elapsed, _stop.Token);
                    }
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            from.Close(0);
            to.Close(0);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }
        }
        await _accept;
        _stop.Dispose();
    }
}
