using System.Buffers;
using System.Numerics;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Multicast;

/// <summary>A batch put back together, in sequence order. Its buffer is pooled: <see cref="Dispose"/> returns it.</summary>
public sealed class ReassembledBatch : IDisposable
{
    private byte[]? _buffer;

    internal ReassembledBatch(long sequence, byte[] buffer, int length)
    {
        Sequence = sequence;
        _buffer = buffer;
        Length = length;
    }

    public long Sequence { get; }
    public int Length { get; }
    public ReadOnlyMemory<byte> Bytes => (_buffer ?? throw new ObjectDisposedException(nameof(ReassembledBatch))).AsMemory(0, Length);

    public void Dispose()
    {
        if (_buffer is { } buffer)
        {
            _buffer = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

/// <summary>
/// The receiver's state without sockets or clocks (time comes in as µs, randomness as a <see cref="Random"/>), so tests
/// drive it exactly: datagrams in (<see cref="Accept"/>), complete batches out in sequence order, gap detection, NACK
/// backoff (NORM: a random delay on [0, K·GRTT], then NACK only what is still missing, then hold off GRTT·(K+2)), loss
/// accounting and reports (<see cref="Tick"/>). Not thread-safe: <see cref="MulticastReceiver"/> serializes calls.
/// </summary>
internal sealed class MulticastReassembly : IDisposable
{
    private enum NackState
    {
        Idle,
        BackingOff,
        HoldingOff,
    }

    private sealed class Partial(int length, int fragments, byte[] buffer)
    {
        public readonly int Length = length;
        public readonly int Fragments = fragments;
        public readonly byte[] Buffer = buffer;
        public readonly ulong[] Have = new ulong[(fragments + 63) / 64];
        public int Received;
        public int HighestIndex = -1;
        public bool Complete => Received == Fragments;

        public bool Has(int index) => (Have[index / 64] & (1UL << (index % 64))) != 0;
    }

    private readonly MulticastKey _key;
    private readonly ReplayWindow _replay = new();
    private readonly MulticastReceiverOptions _options;
    private readonly Random _random;
    private readonly SortedDictionary<long, Partial> _batches = [];
    private readonly LossEventEstimator _loss = new();
    private readonly byte[] _fragment = new byte[MulticastDatagram.MaxFragmentPayload];
    private long _heldBytes;
    private long _highestData;
    private long _heartbeatHead;
    private ulong _highestCounter;
    private bool _anyCounter;
    private long _lastHeardAt = long.MinValue;
    private long _echo;
    private long _echoHeardAt;
    private long _bytesReceived;
    private long _bytesAtLastReport;
    private long _lastReportAt = long.MinValue;
    private NackState _nackState;
    private long _nackAt;

    public MulticastReassembly(MulticastJoinMessage join, MulticastReceiverOptions options, Random random)
    {
        _key = new MulticastKey(join.SenderId, join.KeyId, join.Key, join.NonceSalt);
        _options = options;
        _random = random;
        NextSequence = join.FirstSequence;
        GrttMicroseconds = join.GrttMicroseconds;
    }

    /// <summary>The next batch to deliver in order.</summary>
    public long NextSequence { get; private set; }

    /// <summary>The scale of NACK backoff and hold-off (from the join; the owner may update it).</summary>
    public long GrttMicroseconds { get; set; }

    /// <summary>Datagrams lost, from gaps in the sender's counter (repairs included: they are datagrams too).</summary>
    public long DatagramsLost { get; private set; }

    public long DatagramsAccepted { get; private set; }

    public long NackedFragments { get; private set; }

    /// <summary>
    /// Judges one datagram; fragments are stored, and every batch that became deliverable in order is appended to
    /// <paramref name="completed"/> (the caller disposes them). Returns null when accepted, else why it was dropped.
    /// </summary>
    public DatagramDropReason? Accept(ReadOnlySpan<byte> datagram, long now, List<ReassembledBatch> completed)
    {
        var result = MulticastDatagram.TryOpen(datagram, _key, _replay, _fragment, out var header);
        switch (result)
        {
            case DatagramParseResult.Malformed:
                return DatagramDropReason.Malformed;
            case DatagramParseResult.Forged:
                return DatagramDropReason.Forged;
            case DatagramParseResult.Foreign:
                return DatagramDropReason.Foreign;
            case DatagramParseResult.Replayed:
                return DatagramDropReason.Replayed;
        }
        CountLoss(header.Counter, now);
        _lastHeardAt = now;
        _echo = header.SendTimestamp;
        _echoHeardAt = now;
        DatagramsAccepted++;
        if (header.Kind == DatagramKind.Heartbeat)
        {
            _heartbeatHead = Math.Max(_heartbeatHead, header.Sequence);
            return null;
        }
        var sequence = header.Sequence;
        if (sequence < NextSequence)
        {
            return DatagramDropReason.Duplicate;
        }
        if (!_batches.TryGetValue(sequence, out var partial))
        {
            if (sequence != NextSequence
                && (sequence - NextSequence >= _options.MaxBatchesAhead || _heldBytes + header.BatchLength > _options.WindowBytes))
            {
                return DatagramDropReason.Window;
            }
            partial = new Partial(header.BatchLength, header.FragmentCount, ArrayPool<byte>.Shared.Rent(header.BatchLength));
            _batches.Add(sequence, partial);
            _heldBytes += header.BatchLength;
        }
        else if (partial.Length != header.BatchLength)
        {
            // Authentic but inconsistent: the key holder changed a batch's length. Nothing to place it by.
            return DatagramDropReason.Malformed;
        }
        if (partial.Has(header.FragmentIndex))
        {
            return DatagramDropReason.Duplicate;
        }
        var length = header.FragmentLength;
        _fragment.AsSpan(0, length).CopyTo(partial.Buffer.AsSpan(header.FragmentOffset));
        partial.Have[header.FragmentIndex / 64] |= 1UL << (header.FragmentIndex % 64);
        partial.Received++;
        _bytesReceived += length;
        if (sequence > _highestData)
        {
            _highestData = sequence;
        }
        partial.HighestIndex = Math.Max(partial.HighestIndex, header.FragmentIndex);
        while (_batches.TryGetValue(NextSequence, out var next) && next.Complete)
        {
            _batches.Remove(NextSequence);
            _heldBytes -= next.Length;
            completed.Add(new ReassembledBatch(NextSequence, next.Buffer, next.Length));
            NextSequence++;
        }
        return null;
    }

    private void CountLoss(ulong counter, long now)
    {
        if (!_anyCounter)
        {
            _anyCounter = true;
            _highestCounter = counter;
            _loss.OnReceived();
            return;
        }
        if (counter > _highestCounter)
        {
            var lost = (long)Math.Min(counter - _highestCounter - 1, int.MaxValue);
            DatagramsLost += lost;
            _loss.OnLost(lost, now, GrttMicroseconds);
            _highestCounter = counter;
        }
        _loss.OnReceived();
    }

    /// <summary>
    /// Advances timers: returns a report to send now (periodic, or the NACKs of a backoff that ended), else null.
    /// </summary>
    public MulticastReportMessage? Tick(long now)
    {
        List<MulticastNack>? nacks = null;
        var k = _options.BackoffFactor;
        switch (_nackState)
        {
            case NackState.Idle when HasGap(now):
                _nackState = NackState.BackingOff;
                _nackAt = now + NackBackoff.DelayMicroseconds(_random.NextDouble(), GrttMicroseconds, k, _options.GroupSizeEstimate);
                break;
            case NackState.HoldingOff when now >= _nackAt:
                _nackState = NackState.Idle;
                break;
        }
        if (_nackState == NackState.BackingOff && now >= _nackAt)
        {
            nacks = BuildNacks(now);
            if (nacks.Count > 0)
            {
                _nackState = NackState.HoldingOff;
                _nackAt = now + (GrttMicroseconds * (k + 2));
            }
            else
            {
                // The repair (or the late original) arrived during the backoff: nothing to say.
                _nackState = NackState.Idle;
                nacks = null;
            }
        }
        var periodic = _lastReportAt == long.MinValue || now - _lastReportAt >= _options.ReportInterval.TotalMicroseconds;
        if (nacks is null && !periodic)
        {
            return null;
        }
        var elapsed = _lastReportAt == long.MinValue ? 0 : now - _lastReportAt;
        var report = new MulticastReportMessage
        {
            NextSequence = NextSequence,
            HighestSequence = Math.Max(_highestData, _heartbeatHead),
            BytesReceived = _bytesReceived,
            LossEventRate = _loss.Rate,
            TimestampEcho = _echo,
            HoldMicroseconds = _echo == 0 ? 0 : Math.Max(0, now - _echoHeardAt),
            ReceiveRateBytesPerSecond = elapsed > 0 ? (long)((_bytesReceived - _bytesAtLastReport) * 1e6 / elapsed) : 0,
            Nacks = nacks ?? [],
        };
        _lastReportAt = now;
        _bytesAtLastReport = _bytesReceived;
        return report;
    }

    private bool TailTimedOut(long now) =>
        _lastHeardAt != long.MinValue && now - _lastHeardAt >= _options.TailTimeout.TotalMicroseconds;

    /// <summary>
    /// True when something below the highest position heard is missing. Batches are delivered in order, so the next one
    /// is incomplete whenever anything later was heard; within the newest batch only fragments below the highest index
    /// heard count (the rest may still be on the way), unless a heartbeat said the batch was sent or the tail timed out.
    /// </summary>
    private bool HasGap(long now)
    {
        if (NextSequence < _highestData || NextSequence <= _heartbeatHead)
        {
            return true;
        }
        if (!_batches.TryGetValue(NextSequence, out var partial))
        {
            return false;
        }
        return partial.Received < partial.HighestIndex + 1 || TailTimedOut(now);
    }

    private List<MulticastNack> BuildNacks(long now)
    {
        var nacks = new List<MulticastNack>();
        var tail = TailTimedOut(now);
        var limit = Math.Max(_highestData, _heartbeatHead);
        for (var sequence = NextSequence; sequence <= limit && nacks.Count < WireLimits.MaxMulticastNacks; sequence++)
        {
            var whole = sequence < _highestData || sequence <= _heartbeatHead || tail;
            if (!_batches.TryGetValue(sequence, out var partial))
            {
                if (whole)
                {
                    nacks.Add(new MulticastNack { Sequence = sequence });
                    NackedFragments++;
                }
                continue;
            }
            if (partial.Complete)
            {
                continue;
            }
            var upTo = whole ? partial.Fragments : partial.HighestIndex;
            var bitmap = new byte[(partial.Fragments + 7) / 8];
            var missing = 0;
            for (var index = 0; index < upTo; index++)
            {
                if (!partial.Has(index))
                {
                    bitmap[index / 8] |= (byte)(1 << (index % 8));
                    missing++;
                }
            }
            if (missing > 0)
            {
                nacks.Add(new MulticastNack { Sequence = sequence, Missing = bitmap });
                NackedFragments += missing;
            }
        }
        return nacks;
    }

    /// <summary>Fragments held of the next batch (for tests and diagnostics).</summary>
    internal int HeldFragments(long sequence) =>
        _batches.TryGetValue(sequence, out var partial) ? partial.Have.Sum(w => BitOperations.PopCount(w)) : 0;

    public void Dispose()
    {
        foreach (var partial in _batches.Values)
        {
            ArrayPool<byte>.Shared.Return(partial.Buffer);
        }
        _batches.Clear();
        _key.Dispose();
    }
}
