using Microsoft.Extensions.Logging;
using StreamClone.Shared.Transport;
using StreamClone.Source.Inputs;

namespace StreamClone.Source.Server;

/// <summary>
/// One sink's transfer of the snapshot: a bulk lane (offer → inventory → batches → completion) and
/// a demand lane (requests answered ahead of the bulk stream). Lifecycle lives here; the lanes'
/// loops are in SourceSession.Bulk.cs and SourceSession.Demand.cs.
/// </summary>
public sealed partial class SourceSession
{
    private readonly ISnapshotInput _input;
    private readonly SourceOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop;
    private FrameConnection? _demandLane;
    private CloseReason? _stopReason;

    internal SourceSession(string sessionId, PeerIdentity peer, ISnapshotInput input, SourceOptions options, ILogger logger, CancellationToken serverToken)
    {
        SessionId = sessionId;
        Peer = peer;
        _input = input;
        _options = options;
        _logger = logger;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(serverToken);
        Stats = new SourceSessionStats { SessionId = sessionId, Peer = peer.ToString(), TotalBytes = input.Offer.Objects.Sum(o => o.Size) };
    }

    public string SessionId { get; }

    /// <summary>The sink (or relay) this session streams to.</summary>
    public PeerIdentity Peer { get; }

    public SourceSessionStats Stats { get; }

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
    internal void Stop(CloseReason reason)
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
}
