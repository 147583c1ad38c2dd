using StreamClone.Shared.Diagnostics;

namespace StreamClone.Shared.Multicast;

/// <summary>The send loop: data in sequence order, repairs first whenever an aggregation window closes, heartbeats while idle.</summary>
public sealed partial class MulticastSender
{
    private readonly byte[] _datagram = new byte[WireLimits.MaxMulticastDatagramBytes];
    private readonly List<(long Sequence, byte[]? Missing)> _due = [];
    private double _tokens;
    private long _tokensAt;
    private long _lastSendAt;

    /// <summary>
    /// Sends batches from <paramref name="firstSequence"/> on as the source appends them, and repairs, until cancelled
    /// (the owner stops it once every receiver finished or left). Heartbeats keep going after the source completes,
    /// so late NACKs are still answered.
    /// </summary>
    public async Task RunAsync(long firstSequence = 1, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(firstSequence, 1);
        lock (_lock)
        {
            _sendHead = firstSequence - 1;
        }
        var next = firstSequence;
        _tokensAt = Now();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await SendDueRepairsAsync(cancellationToken);
            if (next <= _source.Count)
            {
                await SendBatchAsync(next, DatagramKind.Data, null, cancellationToken);
                lock (_lock)
                {
                    _sendHead = next;
                }
                next++;
                continue;
            }
            await WaitIdleAsync(next, cancellationToken);
        }
    }

    private async Task WaitIdleAsync(long next, CancellationToken cancellationToken)
    {
        long wakeAt;
        bool heartbeatDue;
        long head;
        lock (_lock)
        {
            var now = Now();
            var heartbeatAt = _lastSendAt + Micros(_options.HeartbeatInterval);
            heartbeatDue = now >= heartbeatAt && _sendHead >= 1;
            wakeAt = Math.Min(heartbeatAt, _repairs.Deadline);
            head = _sendHead;
        }
        if (heartbeatDue)
        {
            await SendHeartbeatAsync(head, cancellationToken);
            return;
        }
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var delay = TimeSpan.FromMicroseconds(Math.Max(1000, wakeAt - Now()));
        var waits = new List<Task> { _wake.WaitAsync(idle.Token), Task.Delay(delay, idle.Token) };
        if (!_source.IsComplete)
        {
            waits.Add(_source.WaitForBatchAsync(next, idle.Token).AsTask());
        }
        await Task.WhenAny(waits);
        await idle.CancelAsync();
        foreach (var wait in waits)
        {
            // Observe every wait: the cancelled ones end as cancelled, a failing source surfaces here.
            try
            {
                await wait;
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }
    }

    private async Task SendDueRepairsAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            _due.Clear();
            if (!_repairs.TryTakeDue(Now(), _grtt.Microseconds, _due))
            {
                return;
            }
        }
        long repaired = 0;
        foreach (var (sequence, missing) in _due)
        {
            repaired += await SendBatchAsync(sequence, DatagramKind.Repair, missing, cancellationToken);
        }
        Interlocked.Add(ref _repairsSent, repaired);
        StreamCloneMetrics.RecordRepairs(repaired);
    }

    /// <summary>Sends the fragments of one batch (all, or those set in <paramref name="missing"/>); returns how many.</summary>
    private async Task<long> SendBatchAsync(long sequence, DatagramKind kind, byte[]? missing, CancellationToken cancellationToken)
    {
        using var lease = await _source.ReadBatchAsync(sequence, cancellationToken);
        var batch = lease.Bytes;
        if (batch.Length is < 1 or > WireLimits.MaxMulticastBatchBytes)
        {
            throw new InvalidOperationException(
                $"batch {sequence} is {batch.Length} bytes; multicast carries 1 to {WireLimits.MaxMulticastBatchBytes}");
        }
        var count = MulticastDatagram.FragmentCount(batch.Length);
        long sent = 0;
        for (var index = 0; index < count; index++)
        {
            if (missing is not null && (index / 8 >= missing.Length || (missing[index / 8] & (1 << (index % 8))) == 0))
            {
                continue;
            }
            var offset = index * MulticastDatagram.MaxFragmentPayload;
            var length = Math.Min(MulticastDatagram.MaxFragmentPayload, batch.Length - offset);
            await PaceAsync(MulticastDatagram.HeaderBytes + length + MulticastDatagram.TagBytes, cancellationToken);
            var header = new DatagramHeader(kind, _key.SenderId, _key.KeyId, sequence, index, count, batch.Length, offset,
                _counter++, Now());
            var written = MulticastDatagram.Write(_datagram, header, batch.Span.Slice(offset, length), _key);
            await _socket.SendToAsync(_datagram.AsMemory(0, written), System.Net.Sockets.SocketFlags.None, _groupAddress,
                cancellationToken);
            sent++;
            if (kind == DatagramKind.Data && index % 64 == 63)
            {
                // A long batch must not hold back repairs whose window closed meanwhile.
                await SendDueRepairsAsync(cancellationToken);
            }
        }
        Interlocked.Add(ref _datagramsSent, sent);
        StreamCloneMetrics.RecordDatagramsSent(sent, kind == DatagramKind.Repair);
        _lastSendAt = Now();
        return sent;
    }

    private async Task SendHeartbeatAsync(long head, CancellationToken cancellationToken)
    {
        var header = new DatagramHeader(DatagramKind.Heartbeat, _key.SenderId, _key.KeyId, head, 0, 0, 0, 0, _counter++, Now());
        var written = MulticastDatagram.Write(_datagram, header, [], _key);
        await _socket.SendToAsync(_datagram.AsMemory(0, written), System.Net.Sockets.SocketFlags.None, _groupAddress,
            cancellationToken);
        Interlocked.Increment(ref _datagramsSent);
        StreamCloneMetrics.RecordDatagramsSent(1, repair: false);
        _lastSendAt = Now();
    }

    /// <summary>Token bucket at the controlled rate, <see cref="MulticastSenderOptions.PacingBurst"/> deep.</summary>
    private async ValueTask PaceAsync(int bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            long rate;
            var now = Now();
            lock (_lock)
            {
                _rate.OnTick(now, Micros(_options.FeedbackTimeout));
                rate = _rate.Rate;
            }
            var depth = Math.Max(4.0 * WireLimits.MaxMulticastDatagramBytes, rate * _options.PacingBurst.TotalSeconds);
            _tokens = Math.Min(depth, _tokens + ((now - _tokensAt) * rate / 1e6));
            _tokensAt = now;
            if (_tokens >= bytes)
            {
                _tokens -= bytes;
                return;
            }
            var wait = (bytes - _tokens) / rate;
            await Task.Delay(TimeSpan.FromSeconds(Math.Max(0.001, wait)), cancellationToken);
        }
    }
}
