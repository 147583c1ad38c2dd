using StreamClone.Shared.Multicast;

namespace StreamClone.Tests.Unit.Multicast;

/// <summary>The arithmetic of repair aggregation, NACK backoff, GRTT, loss event rate and rate control.</summary>
public class MulticastControlTests
{
    private const long Window = 5_000;

    [Fact]
    public void Many_receivers_missing_the_same_fragment_cost_one_repair()
    {
        var aggregator = new RepairAggregator();
        for (var receiver = 0; receiver < 8; receiver++)
        {
            aggregator.Add(sequence: 3, missing: [0b0000_0100], now: 100 + receiver, Window);
        }
        var due = new List<(long Sequence, byte[]? Missing)>();
        Assert.False(aggregator.TryTakeDue(now: 100 + Window - 1, 1000, due));
        Assert.True(aggregator.TryTakeDue(now: 100 + Window, 1000, due));

        var (sequence, missing) = Assert.Single(due);
        Assert.Equal(3, sequence);
        Assert.Equal([0b0000_0100], missing);
    }

    [Fact]
    public void Different_losses_merge_per_batch_and_a_whole_batch_nack_absorbs_bitmaps()
    {
        var aggregator = new RepairAggregator();
        aggregator.Add(3, [0b01], 0, Window);
        aggregator.Add(3, [0b10, 0b1], 1, Window);
        aggregator.Add(4, [0b1], 2, Window);
        aggregator.Add(4, [], 3, Window);
        var due = new List<(long Sequence, byte[]? Missing)>();
        Assert.True(aggregator.TryTakeDue(Window, 1000, due));

        Assert.Equal(2, due.Count);
        Assert.Equal(3, due[0].Sequence);
        Assert.Equal([0b11, 0b1], due[0].Missing);
        Assert.Equal(4, due[1].Sequence);
        Assert.Null(due[1].Missing);
    }

    [Fact]
    public void Nacks_for_a_fragment_just_repaired_are_ignored_for_one_grtt()
    {
        var aggregator = new RepairAggregator();
        aggregator.Add(3, [0b1], 0, Window);
        var due = new List<(long Sequence, byte[]? Missing)>();
        Assert.True(aggregator.TryTakeDue(Window, grttMicroseconds: 1000, due));

        aggregator.Add(3, [0b1], Window + 999, Window);
        Assert.False(aggregator.HasPending);
        aggregator.Add(3, [0b11], Window + 999, Window);
        due.Clear();
        Assert.True(aggregator.TryTakeDue(100_000, 1000, due));
        Assert.Equal([0b10], Assert.Single(due).Missing);

        aggregator.Add(3, [0b10], 101_000, Window);
        Assert.True(aggregator.HasPending);
    }

    [Fact]
    public void The_backoff_lies_on_zero_to_k_grtt_and_leans_late()
    {
        var random = new Random(1);
        var delays = Enumerable.Range(0, 10_000).Select(_ => NackBackoff.DelayMicroseconds(random.NextDouble(), 1000, 4, 1000)).ToList();
        Assert.All(delays, d => Assert.InRange(d, 0, 4000));
        Assert.Equal(0, NackBackoff.DelayMicroseconds(0, 1000, 4, 1000));
        Assert.Equal(4000, NackBackoff.DelayMicroseconds(1, 1000, 4, 1000));
        // λ = ln(1000)+1: most of the mass is near K·GRTT, so early NACKs are few.
        Assert.True(delays.Count(d => d > 3000) > delays.Count(d => d < 1000) * 5);
        Assert.Equal(0, NackBackoff.DelayMicroseconds(0.7, 1000, 0, 1000));
    }

    [Fact]
    public void Grtt_rises_at_once_and_falls_by_at_most_a_tenth_per_probe_interval()
    {
        var grtt = new GrttEstimator(initialMicroseconds: 10_000, probeIntervalMicroseconds: 1_000_000);
        grtt.OnSample(20_000, now: 0);
        Assert.Equal((10_000 / 4) + (3 * 20_000 / 4), grtt.Microseconds);
        var risen = grtt.Microseconds;

        grtt.OnSample(2_000, now: 500_000);
        Assert.Equal(risen, grtt.Microseconds);
        grtt.OnSample(2_000, now: 1_000_000);
        // The interval's max was the 20 ms sample: no fall yet.
        Assert.Equal(risen, grtt.Microseconds);
        grtt.OnSample(2_000, now: 2_000_000);
        Assert.Equal(risen * 9 / 10, grtt.Microseconds);

        grtt.OnSample(1, now: 2_000_001);
        Assert.True(grtt.Microseconds >= GrttEstimator.MinMicroseconds);
    }

    [Fact]
    public void One_loss_in_a_hundred_datagrams_is_a_loss_event_rate_near_one_percent()
    {
        var loss = new LossEventEstimator();
        Assert.Equal(0, loss.Rate);
        for (var i = 0; i < 20; i++)
        {
            loss.OnReceived(99);
            loss.OnLost(1, now: i * 1_000_000, rttMicroseconds: 1000);
        }
        Assert.InRange(loss.Rate, 0.0099, 0.0102);

        // Losses within one round trip of the first are one event.
        loss.OnReceived(99);
        loss.OnLost(1, now: 30_000_000, rttMicroseconds: 1000);
        loss.OnLost(5, now: 30_000_500, rttMicroseconds: 1000);
        Assert.InRange(loss.Rate, 0.0099, 0.0102);

        // With no loss the open interval grows and the rate decays.
        loss.OnReceived(100_000);
        Assert.True(loss.Rate < 0.005);
    }

    [Fact]
    public void The_tcp_equation_gives_the_rfc_5348_rate()
    {
        // s = 1472, R = 1 ms, p = 0.05: 1472 / (0.001·√(0.1/3) + 0.004·3·√(0.15/8)·0.05·1.08) ≈ 5.4 MB/s.
        Assert.InRange(RateController.TcpRate(1472, 0.001, 0.05), 5.35e6, 5.50e6);
        // Halving the round trip doubles the rate.
        Assert.Equal(2.0, RateController.TcpRate(1472, 0.001, 0.01) / RateController.TcpRate(1472, 0.002, 0.01), 9);
    }

    [Fact]
    public void The_rate_follows_the_slowest_receiver_within_the_operator_bounds()
    {
        var rate = new RateController(minRate: 1_000_000, maxRate: 50_000_000, initialRate: 4_000_000, segmentBytes: 1472);
        // Slow start: no loss yet, at most twice the receive rate and twice the rate per GRTT.
        rate.OnReport("a", 0, 1000, receiveRate: 4_000_000, grttMicroseconds: 1000, now: 0);
        Assert.Equal(8_000_000, rate.Rate);
        rate.OnReport("a", 0, 1000, receiveRate: 8_000_000, grttMicroseconds: 1000, now: 500);
        Assert.Equal(8_000_000, rate.Rate);
        rate.OnReport("a", 0, 1000, receiveRate: 8_000_000, grttMicroseconds: 1000, now: 1000);
        Assert.Equal(16_000_000, rate.Rate);

        // A lossy receiver becomes the limiting one, and the rate drops to its TCP rate at once.
        rate.OnReport("b", 0.05, 1000, receiveRate: 16_000_000, grttMicroseconds: 1000, now: 1100);
        Assert.Equal("b", rate.LimitingReceiver);
        Assert.InRange(rate.Rate, 5_350_000, 5_500_000);

        // Worse loss: never below the operator's floor.
        rate.OnReport("b", 0.9, 100_000, receiveRate: 0, grttMicroseconds: 1000, now: 1200);
        Assert.Equal(1_000_000, rate.Rate);

        // The lossy receiver leaves: rises again, ×2 per GRTT, capped at the ceiling.
        rate.Remove("b");
        for (var t = 10_000; t < 30_000; t += 1000)
        {
            rate.OnReport("a", 0, 1000, receiveRate: 100_000_000, grttMicroseconds: 1000, now: t);
        }
        Assert.Equal(50_000_000, rate.Rate);
    }

    [Fact]
    public void Without_feedback_the_rate_halves_once_per_timeout_down_to_the_floor()
    {
        var rate = new RateController(minRate: 1_000_000, maxRate: 50_000_000, initialRate: 8_000_000, segmentBytes: 1472);
        rate.OnTick(now: 10_000_000, timeoutMicroseconds: 250_000);
        Assert.Equal(8_000_000, rate.Rate); // no report yet: nothing to miss

        rate.OnReport("a", 0.01, 1000, 0, 1000, now: 0);
        var reported = rate.Rate;
        rate.OnTick(now: 249_999, timeoutMicroseconds: 250_000);
        Assert.Equal(reported, rate.Rate);
        rate.OnTick(now: 250_000, timeoutMicroseconds: 250_000);
        Assert.Equal(reported / 2, rate.Rate);
        rate.OnTick(now: 250_001, timeoutMicroseconds: 250_000);
        Assert.Equal(reported / 2, rate.Rate);
        for (var t = 500_000; t < 10_000_000; t += 250_000)
        {
            rate.OnTick(t, 250_000);
        }
        Assert.Equal(1_000_000, rate.Rate);
    }
}
