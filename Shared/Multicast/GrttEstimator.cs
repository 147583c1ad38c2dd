namespace StreamClone.Shared.Multicast;

/// <summary>
/// The sender's group round-trip time (NORM, RFC 5740 §5.5.1): the maximum receiver round trip, from timestamp echoes.
/// A rise applies at once (0.25·old + 0.75·new); a fall happens once per probe interval, to the interval's largest sample
/// but at most ×0.9, so one quiet receiver cannot shrink the backoff window under a slow one. Bounded to [1 ms, 15 s].
/// Times are microseconds of the sender's monotonic clock. Not thread-safe (the sender calls it under its lock).
/// </summary>
public sealed class GrttEstimator(long initialMicroseconds, long probeIntervalMicroseconds)
{
    public const long MinMicroseconds = 1_000;
    public const long MaxMicroseconds = 15_000_000;

    private long _intervalMax;
    private long _intervalStart = long.MinValue;

    public long Microseconds { get; private set; } = Math.Clamp(initialMicroseconds, MinMicroseconds, MaxMicroseconds);

    public void OnSample(long rttMicroseconds, long now)
    {
        var rtt = Math.Clamp(rttMicroseconds, MinMicroseconds, MaxMicroseconds);
        if (_intervalStart == long.MinValue)
        {
            _intervalStart = now;
        }
        _intervalMax = Math.Max(_intervalMax, rtt);
        if (rtt > Microseconds)
        {
            Microseconds = Math.Min(MaxMicroseconds, ((Microseconds + 3) / 4) + (3 * rtt / 4));
        }
        if (now - _intervalStart >= probeIntervalMicroseconds)
        {
            if (_intervalMax < Microseconds)
            {
                Microseconds = Math.Max(Math.Max(_intervalMax, MinMicroseconds), Microseconds * 9 / 10);
            }
            _intervalStart = now;
            _intervalMax = 0;
        }
    }
}

/// <summary>NORM's NACK backoff (RFC 5740 §5.3, NRL ExponentialRand).</summary>
public static class NackBackoff
{
    /// <summary>
    /// A delay on [0, K·GRTT] from a truncated exponential with λ = ln(groupSize) + 1: most receivers wait near the end,
    /// a few answer early, so when NACKs are heard (or repairs arrive) the late ones have nothing left to say.
    /// </summary>
    public static long DelayMicroseconds(double uniform, long grttMicroseconds, int backoffFactor, int groupSize)
    {
        var max = (double)grttMicroseconds * backoffFactor;
        if (max <= 0)
        {
            return 0;
        }
        var lambda = Math.Log(Math.Max(1, groupSize)) + 1;
        var delay = max / lambda * Math.Log((Math.Clamp(uniform, 0, 1) * (Math.Exp(lambda) - 1)) + 1);
        return (long)Math.Clamp(delay, 0, max);
    }
}
