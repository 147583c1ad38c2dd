using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

public sealed partial class FrameConnection
{
    /// <summary>This connection's byte counters (peer and lane tags); the handshake names the peer with <see cref="ConnectionMetrics.SetPeer"/>.</summary>
    public ConnectionMetrics Metrics { get; private init; } = new(Lane.Bulk);
}
