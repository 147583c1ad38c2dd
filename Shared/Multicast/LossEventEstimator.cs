namespace StreamClone.Shared.Multicast;

/// <summary>
/// A receiver's loss event rate as TFRC/TFMCC define it (RFC 5348 §5): losses within one round trip of the first are one
/// event; the rate is 1 / the weighted mean of the last 8 loss intervals (packets between events), with the open interval
/// counted when that lowers the rate, so the rate decays once losses stop. 0 until the first loss.
/// </summary>
public sealed class LossEventEstimator
{
    private static readonly double[] Weights = [1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2];
    private readonly long[] _intervals = new long[Weights.Length];
    private int _count;
    private long _open;
    private long _eventStart = long.MinValue;

    public void OnReceived(long datagrams = 1) => _open += datagrams;

    public void OnLost(long datagrams, long now, long rttMicroseconds)
    {
        if (datagrams <= 0)
        {
            return;
        }
        if (_eventStart != long.MinValue && now - _eventStart <= rttMicroseconds)
        {
            return;
        }
        _eventStart = now;
        Array.Copy(_intervals, 0, _intervals, 1, _intervals.Length - 1);
        _intervals[0] = Math.Max(1, _open);
        _count = Math.Min(_count + 1, _intervals.Length);
        _open = 0;
    }

    public double Rate
    {
        get
        {
            if (_count == 0)
            {
                return 0;
            }
            double closed = 0, withOpen = 0, weights = 0, weightsOpen = 0;
            for (var i = 0; i < _count; i++)
            {
                closed += _intervals[i] * Weights[i];
                weights += Weights[i];
            }
            withOpen = _open * Weights[0];
            weightsOpen = Weights[0];
            for (var i = 0; i < Math.Min(_count, Weights.Length - 1); i++)
            {
                withOpen += _intervals[i] * Weights[i + 1];
                weightsOpen += Weights[i + 1];
            }
            var mean = Math.Max(closed / weights, withOpen / weightsOpen);
            return Math.Min(1, 1 / Math.Max(1, mean));
        }
    }
}
