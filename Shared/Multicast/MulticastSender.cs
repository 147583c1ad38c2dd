using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using StreamClone.Shared.Protocol;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Shared.Multicast;

/// <summary>
/// Multicasts a snapshot's encoded stream: each batch of an <see cref="IMulticastBatchSource"/> is cut into
/// self-placing, AES-GCM sealed datagrams (<see cref="MulticastDatagram"/>) and sent once, paced by a token bucket at
/// the rate <see cref="RateController"/> derives from receiver reports. The owner feeds each receiver's reports
/// (<see cref="OnReport"/>) from its TCP control lane; NACKs are aggregated (<see cref="RepairAggregator"/>) and each
/// requested fragment is repaired once. A receiver too far behind is handed back through the lag callback.
/// The socket is created by the constructor, in the calling thread's network namespace.
/// </summary>
public sealed partial class MulticastSender : IDisposable
{
    private readonly IMulticastBatchSource _source;
    private readonly MulticastKey _key;
    private readonly byte[] _keyBytes;
    private readonly MulticastSenderOptions _options;
    private readonly Action<string, long>? _onReceiverLagging;
    private readonly Socket _socket;
    private readonly SocketAddress _groupAddress;
    private readonly long _clockStart = Stopwatch.GetTimestamp();
    private readonly Lock _lock = new();
    private readonly GrttEstimator _grtt;
    private readonly RateController _rate;
    private readonly RepairAggregator _repairs = new();
    private readonly HashSet<string> _lagging = [];
    private readonly SemaphoreSlim _wake = new(0, 1);
    private long _sendHead;
    private ulong _counter;
    private long _datagramsSent;
    private long _repairsSent;

    public MulticastSender(
        IMulticastBatchSource source, uint senderId, uint keyId, MulticastSenderOptions options,
        Action<string, long>? onReceiverLagging = null)
    {
        _source = source;
        _options = options;
        _onReceiverLagging = onReceiverLagging;
        (_keyBytes, var salt) = MulticastKey.Generate();
        _key = new MulticastKey(senderId, keyId, _keyBytes, salt);
        _grtt = new GrttEstimator(Micros(options.InitialGrtt), Micros(options.GrttProbeInterval));
        _rate = new RateController(options.MinRateBytesPerSecond, options.MaxRateBytesPerSecond,
            options.InitialRateBytesPerSecond, WireLimits.MaxMulticastDatagramBytes);
        _groupAddress = options.Group.Serialize();
        _socket = MulticastSockets.OpenSender(options.InterfaceName, options.TimeToLive);
    }

    /// <summary>Sequence of the last batch multicast (0 before the first).</summary>
    public long SendHead
    {
        get { lock (_lock) { return _sendHead; } }
    }

    /// <summary>Current send rate, bytes per second.</summary>
    public long RateBytesPerSecond
    {
        get { lock (_lock) { return _rate.Rate; } }
    }

    /// <summary>Current group round-trip time estimate.</summary>
    public TimeSpan Grtt
    {
        get { lock (_lock) { return TimeSpan.FromMicroseconds(_grtt.Microseconds); } }
    }

    /// <summary>Datagrams sent, data and repair and heartbeat.</summary>
    public long DatagramsSent => Interlocked.Read(ref _datagramsSent);

    /// <summary>Repair datagrams sent.</summary>
    public long RepairsSent => Interlocked.Read(ref _repairsSent);

    /// <summary>
    /// What a receiver needs to join: group, ids, key, and <paramref name="firstSequence"/> (the first batch it takes
    /// from multicast; the owner sends earlier ones over TCP). Sent on the receiver's mutual-TLS control lane only.
    /// </summary>
    public MulticastJoinMessage CreateJoin(long firstSequence)
    {
        lock (_lock)
        {
            return new MulticastJoinMessage
            {
                GroupAddress = _options.Group.Address.ToString(),
                Port = _options.Group.Port,
                SenderId = _key.SenderId,
                KeyId = _key.KeyId,
                Key = (byte[])_keyBytes.Clone(),
                NonceSalt = _key.NonceSalt,
                FirstSequence = firstSequence,
                GrttMicroseconds = _grtt.Microseconds,
                MinRateBytesPerSecond = _options.MinRateBytesPerSecond,
                MaxRateBytesPerSecond = _options.MaxRateBytesPerSecond,
            };
        }
    }

    /// <summary>
    /// One receiver's report, from its control lane. Throws <see cref="ProtocolViolationException"/> (one line) for a
    /// report out of range; NACKs of batches not sent yet are ignored (they name nothing we can repair).
    /// </summary>
    public void OnReport(string receiver, MulticastReportMessage report)
    {
        if (report.Problem() is { } problem)
        {
            throw new ProtocolViolationException(ProtocolError.MalformedHeader, problem);
        }
        var laggingAt = -1L;
        lock (_lock)
        {
            if (_lagging.Contains(receiver))
            {
                return;
            }
            var now = Now();
            var rtt = _grtt.Microseconds;
            if (report.TimestampEcho > 0 && report.TimestampEcho <= now)
            {
                var sample = now - report.TimestampEcho - report.HoldMicroseconds;
                if (sample > 0)
                {
                    _grtt.OnSample(sample, now);
                    rtt = sample;
                }
            }
            if (_sendHead - report.NextSequence >= _options.MaxLagBatches)
            {
                _lagging.Add(receiver);
                _rate.Remove(receiver);
                laggingAt = report.NextSequence;
            }
            else
            {
                _rate.OnReport(receiver, report.LossEventRate, rtt, report.ReceiveRateBytesPerSecond, _grtt.Microseconds, now);
                var window = _grtt.Microseconds * (_options.BackoffFactor + 1);
                var wasOpen = _repairs.HasPending;
                foreach (var nack in report.Nacks)
                {
                    if (nack.Sequence <= _sendHead)
                    {
                        _repairs.Add(nack.Sequence, nack.Missing, now, window);
                    }
                }
                if (!wasOpen && _repairs.HasPending)
                {
                    Wake();
                }
            }
        }
        if (laggingAt >= 0)
        {
            _onReceiverLagging?.Invoke(receiver, laggingAt);
        }
    }

    /// <summary>The receiver left (moved to TCP, done, or gone): it no longer limits the rate.</summary>
    public void RemoveReceiver(string receiver)
    {
        lock (_lock)
        {
            _rate.Remove(receiver);
            _lagging.Remove(receiver);
        }
    }

    public void Dispose()
    {
        _socket.Dispose();
        _key.Dispose();
        _wake.Dispose();
    }

    private void Wake()
    {
        if (_wake.CurrentCount == 0)
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Another report woke the loop first: one wake is all it needs.
            }
        }
    }

    /// <summary>Microseconds of the sender's monotonic clock, from 1 (0 in an echo means "none").</summary>
    private long Now() => Micros(Stopwatch.GetElapsedTime(_clockStart)) + 1;

    private static long Micros(TimeSpan time) => (long)time.TotalMicroseconds;
}
