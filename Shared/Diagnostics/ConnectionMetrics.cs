using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Diagnostics;

/// <summary>
/// One connection's byte counters with its tags (peer, lane) resolved once, so counting a frame is
/// one <c>Add</c>. The peer is <see cref="PeerLabels.Unknown"/> until the handshake names it; the
/// lane is the one the connection was opened or accepted as until the Hello says otherwise.
/// </summary>
public sealed class ConnectionMetrics
{
    private string _peer = PeerLabels.Unknown;
    private string _lane;
    private long _sentCounted;

    public ConnectionMetrics(Lane lane) => _lane = MetricTags.Of(lane);

    public string Peer => _peer;

    public string Lane => _lane;

    /// <summary>Names the peer (its Hello's name; its certificate's once connections carry one). Bounded by <see cref="PeerLabels"/>.</summary>
    public void SetPeer(string? name) => _peer = PeerLabels.Process.Of(name);

    public void SetLane(Lane lane) => _lane = MetricTags.Of(lane);

    /// <summary>Counts what was written since the last call, given the connection's running total (callers hold the send lock).</summary>
    public void CountSentUpTo(long totalWritten)
    {
        var delta = totalWritten - _sentCounted;
        if (delta > 0)
        {
            _sentCounted = totalWritten;
            StreamCloneMetrics.BytesSent.Add(delta, new(MetricTags.Peer, _peer), new(MetricTags.Lane, _lane));
        }
    }

    /// <summary>Counts one whole frame read from the peer.</summary>
    public void CountReceived(in Frame frame) =>
        StreamCloneMetrics.BytesReceived.Add(Frame.PrefixSize + frame.Header.Length + frame.Payload.Length,
            new(MetricTags.Peer, _peer), new(MetricTags.Lane, _lane));
}
