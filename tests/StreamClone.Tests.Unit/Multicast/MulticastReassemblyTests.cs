using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Multicast;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Unit.Multicast;

/// <summary>The receiver's state machine driven by hand: in-order delivery, gap detection, NACK backoff and suppression.</summary>
public sealed class MulticastReassemblyTests : IDisposable
{
    private const long Grtt = 1000;
    private const int K = 4;
    private static readonly byte[] KeyBytes = [.. Enumerable.Range(0, 32).Select(i => (byte)(i * 7))];
    private readonly MulticastKey _key = new(11, 1, KeyBytes, 99);
    private readonly MulticastReassembly _receiver;
    private readonly List<ReassembledBatch> _completed = [];
    private ulong _counter;

    public MulticastReassemblyTests()
    {
        var join = new MulticastJoinMessage
        {
            GroupAddress = "239.0.0.1",
            Port = 1,
            SenderId = 11,
            KeyId = 1,
            Key = KeyBytes,
            NonceSalt = 99,
            FirstSequence = 1,
            GrttMicroseconds = Grtt,
            MinRateBytesPerSecond = 1,
            MaxRateBytesPerSecond = 1,
        };
        var options = new MulticastReceiverOptions
        {
            InterfaceName = "unused",
            BackoffFactor = K,
            ReportInterval = TimeSpan.FromHours(1),
            TailTimeout = TimeSpan.FromHours(1),
        };
        _receiver = new MulticastReassembly(join, options, new Random(5));
    }

    public void Dispose()
    {
        foreach (var batch in _completed)
        {
            batch.Dispose();
        }
        _receiver.Dispose();
        _key.Dispose();
    }

    private static byte[] Batch(long sequence, int length) => [.. Enumerable.Range(0, length).Select(i => (byte)(i ^ sequence))];

    private DatagramDropReason? Deliver(long sequence, byte[] batch, int index, long now, DatagramKind kind = DatagramKind.Data)
    {
        var offset = index * MulticastDatagram.MaxFragmentPayload;
        var header = new DatagramHeader(kind, 11, 1, sequence, index, MulticastDatagram.FragmentCount(batch.Length), batch.Length, offset,
            _counter++, now);
        var datagram = new byte[WireLimits.MaxMulticastDatagramBytes];
        var length = MulticastDatagram.Write(datagram, header, batch.AsSpan(offset, header.FragmentLength), _key);
        return _receiver.Accept(datagram.AsSpan(0, length), now, _completed);
    }

    /// <summary>Ticks every 100 µs from <paramref name="from"/> to <paramref name="to"/>; returns the NACKs sent.</summary>
    private List<(long At, MulticastNack Nack)> TickThrough(long from, long to)
    {
        var nacks = new List<(long, MulticastNack)>();
        for (var now = from; now <= to; now += 100)
        {
            if (_receiver.Tick(now) is { } report)
            {
                nacks.AddRange(report.Nacks.Select(n => (now, n)));
            }
        }
        return nacks;
    }

    [Fact]
    public void Batches_come_out_in_sequence_order_whatever_order_fragments_arrive_in()
    {
        var one = Batch(1, 3000);
        var two = Batch(2, 100);
        Assert.Null(Deliver(2, two, 0, 0));
        Assert.Null(Deliver(1, one, 2, 0));
        Assert.Null(Deliver(1, one, 0, 0));
        Assert.Empty(_completed);
        Assert.Null(Deliver(1, one, 1, 0));

        Assert.Equal([1L, 2L], _completed.Select(b => b.Sequence));
        Assert.Equal(one, _completed[0].Bytes.ToArray());
        Assert.Equal(two, _completed[1].Bytes.ToArray());
        Assert.Equal(3, _receiver.NextSequence);
        Assert.Equal(DatagramDropReason.Duplicate, Deliver(1, one, 1, 0));
    }

    [Fact]
    public void A_gap_is_nacked_after_the_backoff_and_not_again_during_the_hold_off()
    {
        var batch = Batch(1, 5000);
        Deliver(1, batch, 0, 0);
        _counter++; // fragment 1's datagram is lost
        Deliver(1, batch, 2, 0);
        Deliver(1, batch, 3, 0);

        var nacks = TickThrough(0, 30_000);

        // Still missing after the hold-off: NACKed again, never sooner than GRTT·(K+2) after the first.
        Assert.True(nacks.Count >= 2);
        var (at, nack) = nacks[0];
        Assert.InRange(at, 0, (K * Grtt) + 100);
        Assert.Equal(1, nack.Sequence);
        Assert.Equal([0b0010], nack.Missing);
        Assert.True(nacks[1].At - at >= (K + 2) * Grtt);
        Assert.Equal(1, _receiver.DatagramsLost);
    }

    [Fact]
    public void A_repair_that_arrives_during_the_backoff_suppresses_the_nack()
    {
        var batch = Batch(1, 5000);
        Deliver(1, batch, 0, 0);
        Deliver(1, batch, 2, 0);
        Assert.Null(_receiver.Tick(0)?.Nacks.FirstOrDefault());

        // The sender repairs fragment 1 (another receiver asked) before this one's backoff ends.
        Deliver(1, batch, 1, 50, DatagramKind.Repair);
        Deliver(1, batch, 3, 60);

        Assert.Empty(TickThrough(100, 50_000));
        Assert.Equal(1, Assert.Single(_completed).Sequence);
    }

    [Fact]
    public void Missing_whole_batches_are_nacked_with_an_empty_bitmap_and_the_tail_after_a_heartbeat()
    {
        Deliver(1, Batch(1, 100), 0, 0);
        Deliver(3, Batch(3, 3000), 0, 0);
        var header = new DatagramHeader(DatagramKind.Heartbeat, 11, 1, 4, 0, 0, 0, 0, _counter++, 0);
        var datagram = new byte[WireLimits.MaxMulticastDatagramBytes];
        Assert.Null(_receiver.Accept(datagram.AsSpan(0, MulticastDatagram.Write(datagram, header, [], _key)), 0, _completed));

        var nacks = TickThrough(0, 5_000).Select(n => n.Nack).ToList();

        Assert.Equal([2L, 3L, 4L], nacks.Select(n => n.Sequence));
        Assert.Empty(nacks[0].Missing);
        Assert.Equal([0b110], nacks[1].Missing);
        Assert.Empty(nacks[2].Missing);
    }

    [Fact]
    public void A_datagram_beyond_the_window_is_dropped_but_the_next_batch_is_always_taken()
    {
        Assert.Equal(DatagramDropReason.Window, Deliver(2000, Batch(2000, 10), 0, 0));
        Assert.Null(Deliver(1, Batch(1, 10), 0, 0));
        Assert.Equal(2, _receiver.NextSequence);
    }
}
