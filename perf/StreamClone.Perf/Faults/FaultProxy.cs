using System.Net;
using System.Net.Sockets;

namespace StreamClone.Perf.Faults;

/// <summary>
/// A loopback TCP proxy between sink and source, after NATS.Net's NatsProxy at byte level: every
/// accepted connection gets a connection to <see cref="Target"/> and one pump per direction. Faults
/// are aimed at a connection number and a byte offset before the bytes pass (<see cref="Inject"/>),
/// or applied to live connections (<see cref="ProxyConnection.Close"/>, <see cref="ProxyConnection.Stall"/>,
/// <see cref="CutAll"/>). Throttle and delay apply to every connection. Used by the integration tests
/// and by `bench chaos`.
/// </summary>
/// <remarks>
/// Connections are numbered from 1 in accept order. A sink opens its bulk lane, finishes the handshake,
/// then opens its demand lane, so a fresh sink's session is connections 1 (bulk) and 2 (demand).
/// </remarks>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly List<ProxyConnection> _connections = [];
    private readonly Dictionary<(int Connection, ProxyDirection Direction), List<ProxyFault>> _planned = [];
    private readonly List<(int Connection, ProxyDirection Direction, long Bytes, TaskCompletionSource Done)> _byteWaiters = [];
    private readonly Task _accept;
    private IPEndPoint _target;
    private int _accepted;
    private long _totalBytes;
    private int _disposed;

    public FaultProxy(IPEndPoint target)
    {
        _target = target;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(64);
        EndPoint = (IPEndPoint)_listener.LocalEndPoint!;
        _accept = AcceptAsync();
    }

    /// <summary>Where clients are sent to.</summary>
    public IPEndPoint EndPoint { get; }

    /// <summary>Where new connections go; a restarted source listens on a new port. Live connections keep theirs.</summary>
    public IPEndPoint Target
    {
        get { lock (_lock) { return _target; } }
        set { lock (_lock) { _target = value; } }
    }

    /// <summary>Downstream rate per connection, bytes per second; 0 = unlimited.</summary>
    public long BytesPerSecond { get; set; }

    /// <summary>Added before each forwarded read, both directions (latency); zero = none.</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _accepted);

    /// <summary>Bytes read from either side of every connection so far: what a watchdog counts as progress.</summary>
    public long TotalBytes => Interlocked.Read(ref _totalBytes);

    /// <summary>Every connection accepted so far (live or ended), in accept order.</summary>
    public IReadOnlyList<ProxyConnection> History
    {
        get { lock (_lock) { return [.. _connections]; } }
    }

    /// <summary>
    /// Aims <paramref name="fault"/> at one direction of connection <paramref name="connection"/>
    /// (1 = the first accepted). Call before that connection is accepted; faults aimed at one
    /// direction chain in the order given.
    /// </summary>
    public void Inject(int connection, ProxyDirection direction, ProxyFault fault)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(connection);
        ArgumentNullException.ThrowIfNull(fault);
        lock (_lock)
        {
            if (connection <= _accepted)
            {
                throw new InvalidOperationException($"connection {connection} was already accepted: aim faults before the bytes pass");
            }
            if (!_planned.TryGetValue((connection, direction), out var list))
            {
                _planned[(connection, direction)] = list = [];
            }
            list.Add(fault);
        }
    }

    /// <summary>Completes once <paramref name="bytes"/> bytes of that direction of that connection were read from its sender.</summary>
    public Task WhenBytesAsync(int connection, ProxyDirection direction, long bytes, CancellationToken ct = default)
    {
        lock (_lock)
        {
            var live = _connections.Find(c => c.Number == connection);
            if (live is not null && live.BytesRead(direction) >= bytes)
            {
                return Task.CompletedTask;
            }
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _byteWaiters.Add((connection, direction, bytes, done));
            return done.Task.WaitAsync(ct);
        }
    }

    /// <summary>Closes every live connection, both sides (RST with <paramref name="reset"/>, else FIN); the proxy keeps accepting.</summary>
    public void CutAll(bool reset = true)
    {
        foreach (var connection in History)
        {
            connection.Close(reset);
        }
    }

    internal void OnBytes(ProxyConnection connection, ProxyDirection direction, int count, long total)
    {
        Interlocked.Add(ref _totalBytes, count);
        lock (_lock)
        {
            for (var i = _byteWaiters.Count - 1; i >= 0; i--)
            {
                var w = _byteWaiters[i];
                if (w.Connection == connection.Number && w.Direction == direction && total >= w.Bytes)
                {
                    w.Done.TrySetResult();
                    _byteWaiters.RemoveAt(i);
                }
            }
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            client.NoDelay = true;
            ProxyConnection connection;
            lock (_lock)
            {
                var number = ++_accepted;
                connection = new ProxyConnection(this, number, client,
                    Take((number, ProxyDirection.Downstream)), Take((number, ProxyDirection.Upstream)), _stop.Token);
                _connections.Add(connection);
            }
            // Each connection connects and pumps on its own: a refused upstream costs only that client
            // (closed at once), never the accept loop.
            connection.Start(Target);
        }
    }

    private List<ProxyFault> Take((int, ProxyDirection) key) => _planned.Remove(key, out var list) ? list : [];

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await _stop.CancelAsync();
        _listener.Dispose();
        await _accept;
        var connections = History;
        foreach (var connection in connections)
        {
            connection.Close(reset: true);
        }
        await Task.WhenAll(connections.Select(c => c.Completion));
        lock (_lock)
        {
            foreach (var waiter in _byteWaiters)
            {
                waiter.Done.TrySetCanceled();
            }
            _byteWaiters.Clear();
        }
        _stop.Dispose();
    }
}
