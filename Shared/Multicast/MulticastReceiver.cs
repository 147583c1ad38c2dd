using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Shared.Multicast;

/// <summary>
/// Receives one sender's multicast stream (from a <see cref="MulticastJoinMessage"/> that came over the mutual-TLS
/// control lane): verifies and decrypts every datagram, reassembles batches within a bounded window, hands each batch to
/// <c>onBatch</c> strictly in sequence order, and produces reports (periodic feedback, and NACKs after NORM's randomized
/// backoff) through <c>onReport</c>, which the owner sends on the control lane. Dropped datagrams are counted by reason.
/// The socket is created by <see cref="Open"/>, in the calling thread's network namespace.
/// </summary>
public sealed class MulticastReceiver : IDisposable
{
    /// <summary>Receive buffer: larger than any legal datagram, so an oversized one is seen as such (and dropped).</summary>
    private const int ReceiveBufferBytes = 2048;

    private readonly Socket _socket;
    private readonly MulticastReassembly _state;
    private readonly MulticastReceiverOptions _options;
    private readonly Func<ReassembledBatch, CancellationToken, ValueTask> _onBatch;
    private readonly Func<MulticastReportMessage, CancellationToken, ValueTask> _onReport;
    private readonly Lock _lock = new();
    private readonly long _clockStart = Stopwatch.GetTimestamp();
    private readonly long[] _dropped = new long[Enum.GetValues<DatagramDropReason>().Length];

    private MulticastReceiver(
        Socket socket, MulticastReassembly state, MulticastReceiverOptions options, int receiveBuffer,
        Func<ReassembledBatch, CancellationToken, ValueTask> onBatch,
        Func<MulticastReportMessage, CancellationToken, ValueTask> onReport)
    {
        _socket = socket;
        _state = state;
        _options = options;
        _onBatch = onBatch;
        _onReport = onReport;
        ReceiveBufferGranted = receiveBuffer;
    }

    /// <summary>
    /// Joins the group of <paramref name="join"/> on the options' interface. Throws <see cref="ProtocolViolationException"/>
    /// for a join out of range, <see cref="SocketException"/> or <see cref="ArgumentException"/> when the socket cannot be
    /// set up. <paramref name="onBatch"/> owns each batch and disposes it; it runs on the receive loop, so while it is
    /// busy datagrams queue in the socket buffer.
    /// </summary>
    public static MulticastReceiver Open(
        MulticastJoinMessage join, MulticastReceiverOptions options,
        Func<ReassembledBatch, CancellationToken, ValueTask> onBatch,
        Func<MulticastReportMessage, CancellationToken, ValueTask> onReport,
        Random? random = null)
    {
        if (join.Problem() is { } problem)
        {
            throw new ProtocolViolationException(ProtocolError.MalformedHeader, problem);
        }
        var group = IPAddress.Parse(join.GroupAddress);
        var socket = MulticastSockets.OpenReceiver(group, join.Port, options.InterfaceName, options.ReceiveBufferBytes, out var granted);
        return new MulticastReceiver(socket, new MulticastReassembly(join, options, random ?? new Random()), options, granted,
            onBatch, onReport);
    }

    /// <summary>SO_RCVBUF as the kernel granted it (it reports twice what it accounts for payload).</summary>
    public int ReceiveBufferGranted { get; }

    public long NextSequence
    {
        get { lock (_lock) { return _state.NextSequence; } }
    }

    public long DatagramsLost
    {
        get { lock (_lock) { return _state.DatagramsLost; } }
    }

    public long DatagramsAccepted
    {
        get { lock (_lock) { return _state.DatagramsAccepted; } }
    }

    public long Dropped(DatagramDropReason reason) => Interlocked.Read(ref _dropped[(int)reason]);

    /// <summary>A newer GRTT from the sender (NACK backoff scale).</summary>
    public void UpdateGrtt(TimeSpan grtt)
    {
        lock (_lock)
        {
            _state.GrttMicroseconds = Math.Clamp((long)grtt.TotalMicroseconds, GrttEstimator.MinMicroseconds, GrttEstimator.MaxMicroseconds);
        }
    }

    /// <summary>Runs the receive loop and the timer loop until cancelled or a callback fails.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var receive = ReceiveLoopAsync(stop.Token);
        var timer = TimerLoopAsync(stop.Token);
        var first = await Task.WhenAny(receive, timer);
        await stop.CancelAsync();
        try
        {
            await Task.WhenAll(receive, timer);
        }
        catch (OperationCanceledException) when (!first.IsFaulted)
        {
            cancellationToken.ThrowIfCancellationRequested();
        }
        await first;
    }

    private async Task ReceiveLoopAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[ReceiveBufferBytes];
        var completed = new List<ReassembledBatch>();
        while (true)
        {
            var received = await _socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, cancellationToken);
            DatagramDropReason? dropped;
            lock (_lock)
            {
                dropped = _state.Accept(buffer.AsSpan(0, received), Now(), completed);
            }
            if (dropped is { } reason)
            {
                Interlocked.Increment(ref _dropped[(int)reason]);
                StreamCloneMetrics.RecordDatagramDropped(reason);
            }
            if (completed.Count == 0)
            {
                continue;
            }
            try
            {
                for (var i = 0; i < completed.Count; i++)
                {
                    var batch = completed[i];
                    completed[i] = null!;
                    await _onBatch(batch, cancellationToken);
                }
            }
            finally
            {
                foreach (var batch in completed)
                {
                    batch?.Dispose();
                }
                completed.Clear();
            }
        }
    }

    private async Task TimerLoopAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(_options.TickInterval);
        while (await timer.WaitForNextTickAsync(cancellationToken))
        {
            MulticastReportMessage? report;
            long nacked;
            lock (_lock)
            {
                var before = _state.NackedFragments;
                report = _state.Tick(Now());
                nacked = _state.NackedFragments - before;
            }
            if (report is null)
            {
                continue;
            }
            if (nacked > 0)
            {
                StreamCloneMetrics.RecordNacks(_options.Role, nacked);
            }
            await _onReport(report, cancellationToken);
        }
    }

    private long Now() => (long)Stopwatch.GetElapsedTime(_clockStart).TotalMicroseconds + 1;

    public void Dispose()
    {
        _socket.Dispose();
        lock (_lock)
        {
            _state.Dispose();
        }
    }
}
