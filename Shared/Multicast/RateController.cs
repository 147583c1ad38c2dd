namespace StreamClone.Shared.Multicast;

/// <summary>
/// Single-rate TFMCC-style control (RFC 4654, NORM-CC): each receiver's report gives its loss event rate p, round trip R
/// and receive rate; a receiver with p &gt; 0 allows the TCP-equation rate, one with no loss yet allows twice its receive
/// rate (slow start). The send rate follows the slowest receiver (the current limiting receiver): it drops to that at once
/// and rises at most ×2 per group round trip. Always within the operator's [min, max]. Times in µs, rates in bytes/s.
/// Not thread-safe (the sender calls it under its lock).
/// </summary>
public sealed class RateController
{
    private readonly Dictionary<string, double> _allowed = [];
    private readonly long _min;
    private readonly long _max;
    private readonly int _segmentBytes;
    private long _lastIncrease = long.MinValue;
    private long _lastReport = long.MinValue;

    public RateController(long minRate, long maxRate, long initialRate, int segmentBytes)
    {
        if (minRate < 1 || maxRate < minRate)
        {
            throw new ArgumentOutOfRangeException(nameof(minRate), $"rate bounds [{minRate}, {maxRate}] are not a range");
        }
        _min = minRate;
        _max = maxRate;
        _segmentBytes = segmentBytes;
        Rate = Math.Clamp(initialRate, minRate, maxRate);
    }

    public long Rate { get; private set; }

    /// <summary>The receiver that limits the rate now (null before any report).</summary>
    public string? LimitingReceiver { get; private set; }

    /// <summary>TCP throughput equation (RFC 5348 §3.1) with t_RTO = 4R: bytes per second for segment s, round trip R seconds, loss event rate p.</summary>
    public static double TcpRate(int segmentBytes, double rttSeconds, double p) =>
        segmentBytes / ((rttSeconds * Math.Sqrt(2 * p / 3)) + (4 * rttSeconds * 3 * Math.Sqrt(3 * p / 8) * p * (1 + (32 * p * p))));

    public void OnReport(string receiver, double lossEventRate, long rttMicroseconds, long receiveRate, long grttMicroseconds, long now)
    {
        _lastReport = now;
        var rtt = Math.Max(GrttEstimator.MinMicroseconds, rttMicroseconds) / 1e6;
        _allowed[receiver] = lossEventRate > 0
            ? TcpRate(_segmentBytes, rtt, lossEventRate)
            : receiveRate > 0 ? 2.0 * receiveRate : double.PositiveInfinity;
        Update(grttMicroseconds, now);
    }

    /// <summary>
    /// NORM-CC: with no feedback for <paramref name="timeoutMicroseconds"/> (after the first report) the rate halves, once
    /// per timeout, down to the floor: silence may mean the reports themselves are lost to congestion.
    /// </summary>
    public void OnTick(long now, long timeoutMicroseconds)
    {
        if (_lastReport != long.MinValue && now - _lastReport >= timeoutMicroseconds)
        {
            Rate = Math.Max(_min, Rate / 2);
            _lastReport = now;
        }
    }

    public void Remove(string receiver)
    {
        _allowed.Remove(receiver);
    }

    private void Update(long grttMicroseconds, long now)
    {
        var target = double.PositiveInfinity;
        string? limiting = null;
        foreach (var (receiver, allowed) in _allowed)
        {
            if (allowed < target)
            {
                target = allowed;
                limiting = receiver;
            }
        }
        LimitingReceiver = limiting;
        if (target < Rate)
        {
            Rate = Math.Max(_min, (long)target);
        }
        else if (_lastIncrease == long.MinValue || now - _lastIncrease >= grttMicroseconds)
        {
            _lastIncrease = now;
            Rate = (long)Math.Clamp(Math.Min(target, 2.0 * Rate), _min, _max);
        }
    }
}
