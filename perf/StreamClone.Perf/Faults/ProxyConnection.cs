using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace StreamClone.Perf.Faults;

/// <summary>
/// One proxied connection: the accepted client socket, its socket to the target, and a pump per
/// direction (read → fault stages → send; Kestrel's two loops). A FIN is passed on as a half-close;
/// anything else that ends a pump (error, cut, reset) closes both sockets, so neither peer is left
/// waiting on a connection the proxy no longer serves.
/// </summary>
public sealed class ProxyConnection : IDisposable
{
    private const int ReadSize = 16 * 1024;

    private readonly FaultProxy _proxy;
    private readonly Socket _client;
    private readonly Socket _upstream = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
    private readonly List<ProxyFault> _downstreamFaults;
    private readonly List<ProxyFault> _upstreamFaults;
    private readonly CancellationTokenSource _closed;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _downstreamBytes;
    private long _upstreamBytes;
    private int _closing;
    private volatile bool _stallDownstream;
    private volatile bool _stallUpstream;
    private int _pumpsLeft = 2;

    internal ProxyConnection(FaultProxy proxy, int number, Socket client, List<ProxyFault> downstream, List<ProxyFault> upstream, CancellationToken stop)
    {
        _proxy = proxy;
        Number = number;
        _client = client;
        _downstreamFaults = downstream;
        _upstreamFaults = upstream;
        _closed = CancellationTokenSource.CreateLinkedTokenSource(stop);
    }

    /// <summary>1 for the first connection the proxy accepted.</summary>
    public int Number { get; }

    /// <summary>Completes when both pumps ended and both sockets are closed.</summary>
    public Task Completion => _completion.Task;

    public bool IsClosed => Volatile.Read(ref _closing) != 0;

    /// <summary>The faults aimed at this connection, with whether each has fired.</summary>
    public IReadOnlyList<ProxyFault> Faults => [.. _downstreamFaults, .. _upstreamFaults];

    /// <summary>Bytes read from the sender of that direction so far.</summary>
    public long BytesRead(ProxyDirection direction) =>
        Interlocked.Read(ref direction == ProxyDirection.Downstream ? ref _downstreamBytes : ref _upstreamBytes);

    /// <summary>Stops reading that direction from its next read on, for good (a peer that stopped reading).</summary>
    public void Stall(ProxyDirection direction)
    {
        if (direction == ProxyDirection.Downstream)
        {
            _stallDownstream = true;
        }
        else
        {
            _stallUpstream = true;
        }
    }

    /// <summary>
    /// Closes both sockets at once: with <paramref name="reset"/> an RST (linger 0) to each peer,
    /// otherwise a FIN. Pending reads and sends end; idempotent.
    /// </summary>
    public void Close(bool reset)
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }
        foreach (var socket in (Socket[])[_client, _upstream])
        {
            try
            {
                if (reset)
                {
                    socket.LingerState = new LingerOption(true, 0);
                }
                else if (socket.Connected)
                {
                    socket.Shutdown(SocketShutdown.Both);
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
            }
            // Dispose aborts the pumps' pending operations; the kernel sends the RST or FIN.
            socket.Dispose();
        }
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Same as <see cref="Close"/> with RST.</summary>
    public void Dispose() => Close(reset: true);

    internal void Start(IPEndPoint target) => _ = RunAsync(target);

    private async Task RunAsync(IPEndPoint target)
    {
        try
        {
            await _upstream.ConnectAsync(target, _closed.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Target down (a killed source): the client sees its connection reset, as it would without the proxy.
            Close(reset: true);
            _closed.Dispose();
            _completion.TrySetResult();
            return;
        }
        _ = PumpAsync(_upstream, _client, ProxyDirection.Downstream, _downstreamFaults);
        _ = PumpAsync(_client, _upstream, ProxyDirection.Upstream, _upstreamFaults);
    }

    private bool Stalled(ProxyDirection direction) => direction == ProxyDirection.Downstream ? _stallDownstream : _stallUpstream;

    private async Task PumpAsync(Socket from, Socket to, ProxyDirection direction, List<ProxyFault> faults)
    {
        var buffer = new byte[ReadSize];
        ArrayBufferWriter<byte> a = new(ReadSize), b = new(ReadSize);
        long total = 0;
        var clock = Stopwatch.StartNew();
        var endsConnection = true;
        try
        {
            while (true)
            {
                if (Stalled(direction))
                {
                    await StallAsync();
                    return;
                }
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _closed.Token);
                if (read == 0)
                {
                    var tail = a;
                    tail.ResetWrittenCount();
                    foreach (var fault in faults)
                    {
                        fault.Complete(tail);
                    }
                    if (tail.WrittenCount > 0)
                    {
                        await to.SendAsync(tail.WrittenMemory, SocketFlags.None, _closed.Token);
                    }
                    // A FIN travels on as a half-close while the other direction may still be talking;
                    // a stalled other direction never will, so the connection ends here.
                    to.Shutdown(SocketShutdown.Send);
                    endsConnection = Stalled(direction == ProxyDirection.Downstream ? ProxyDirection.Upstream : ProxyDirection.Downstream);
                    return;
                }
                if (_proxy.Delay > TimeSpan.Zero)
                {
                    await Task.Delay(_proxy.Delay, _closed.Token);
                }
                total += read;
                var (output, action) = Transform(buffer.AsMemory(0, read), faults, a, b);
                if (output.Length > 0)
                {
                    await to.SendAsync(output, SocketFlags.None, _closed.Token);
                }
                Interlocked.Add(ref direction == ProxyDirection.Downstream ? ref _downstreamBytes : ref _upstreamBytes, read);
                _proxy.OnBytes(this, direction, read, total);
                switch (action)
                {
                    case FaultAction.Cut:
                        Close(reset: false);
                        return;
                    case FaultAction.Reset:
                        Close(reset: true);
                        return;
                    case FaultAction.Stall:
                        Stall(direction);
                        continue;
                }
                if (direction == ProxyDirection.Downstream && _proxy.BytesPerSecond is var rate and > 0)
                {
                    var due = TimeSpan.FromSeconds((double)total / rate);
                    if (due > clock.Elapsed)
                    {
                        await Task.Delay(due - clock.Elapsed, _closed.Token);
                    }
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        finally
        {
            if (endsConnection)
            {
                Close(reset: true);
            }
            if (Interlocked.Decrement(ref _pumpsLeft) == 0)
            {
                // Both directions saw FIN: a clean close.
                Close(reset: false);
                _closed.Dispose();
                _completion.TrySetResult();
            }
        }
    }

    /// <summary>A stalled direction reads nothing more; it ends only when the connection is closed (cut, the other side's error, dispose).</summary>
    private async Task StallAsync()
    {
        try
        {
            await Task.Delay(Timeout.Infinite, _closed.Token);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static (ReadOnlyMemory<byte> Output, FaultAction Action) Transform(ReadOnlyMemory<byte> input, List<ProxyFault> faults, ArrayBufferWriter<byte> a, ArrayBufferWriter<byte> b)
    {
        var data = input;
        foreach (var fault in faults)
        {
            var output = data.Span.Overlaps(a.WrittenSpan) ? b : a;
            output.ResetWrittenCount();
            var action = fault.Process(data.Span, output);
            data = output.WrittenMemory;
            if (action != FaultAction.Forward)
            {
                return (data, action);
            }
        }
        return (data, FaultAction.Forward);
    }
}
