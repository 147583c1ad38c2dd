using Microsoft.Extensions.Logging;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// Handles a frame a child sent on its bulk lane while the session streams (other than SnapshotStored, which the
/// session takes itself). The frame's slices die when it returns. Throw a <see cref="ProtocolViolationException"/>
/// to end the session; return false to stop receiving on the lane.
/// </summary>
public delegate ValueTask<bool> ControlFrameHandler(DownstreamSession session, Frame frame);

/// <summary>
/// One child's transfer of a snapshot from an <see cref="EncodedStream"/>: a bulk lane (offer → inventory →
/// batches from the stream, filtered by the child's inventory → completion → the child's acknowledgement) and
/// a demand lane (requests answered ahead of the bulk stream, read through an <see cref="IDemandReader"/>).
/// Lifecycle lives here; the lanes' loops are in DownstreamSession.Bulk.cs and DownstreamSession.Demand.cs.
/// </summary>
public sealed partial class DownstreamSession
{
    private readonly DownstreamServer _server;
    private readonly DownstreamOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop;
    private FrameConnection? _demandLane;
    private CloseReason? _stopReason;

    internal DownstreamSession(string sessionId, PeerIdentity peer, DownstreamServer server, ILogger logger, CancellationToken serverToken)
    {
        SessionId = sessionId;
        Peer = peer;
        _server = server;
        _options = server.Options;
        _logger = logger;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(serverToken);
        Stats = new DownstreamSessionStats { SessionId = sessionId, Peer = peer.ToString() };
    }

    public string SessionId { get; }

    /// <summary>The child (sink or relay) this session streams to.</summary>
    public PeerIdentity Peer { get; }

    public DownstreamSessionStats Stats { get; }

    /// <summary>The stream this session reads (null until the offer went out).</summary>
    public EncodedStream? Stream { get; private set; }

    private MetricRole Role => _server.MetricRole;

    /// <summary>
    /// Stops the session for good and unlinks it from the server's token: a linked token source
    /// stays registered on its parent until disposed, so every connection that ever said Hello
    /// would otherwise leave a registration behind for the server's lifetime.
    /// </summary>
    internal void Close(CloseReason reason)
    {
        Stop(reason);
        _stop.Dispose();
    }

    /// <summary>Stops both lanes; the session's first stop reason is kept (each connection records its own first cause). Never throws.</summary>
    public void Stop(CloseReason reason)
    {
        Interlocked.CompareExchange(ref _stopReason, reason, null);
        _demandLane?.Abort(reason);
        try
        {
            _stop.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// Our own failure (the snapshot could not be read: a live VM's migration stream failed; a relay lost its
    /// upstream) is told to the child as IncompleteSnapshot, so it does not just see the connection drop.
    /// </summary>
    private CloseReason CannotDeliver(Exception ex) => ex is EncodedStreamFailedException failed && failed.Reason.Kind == CloseKind.Fault
        ? failed.Reason
        : CloseReason.Fault(ProtocolError.IncompleteSnapshot, $"the {_server.Role} cannot deliver snapshot {(Stream ?? _server.Stream)?.Offer.SnapshotId}: {ex.Message}");
}
