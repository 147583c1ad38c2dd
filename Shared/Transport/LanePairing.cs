using System.Collections.Concurrent;

namespace StreamClone.Shared.Transport;

/// <summary>
/// The server side's sessions by id, and the pairing rule for their lanes: a bulk lane opens a session under
/// the id its Hello named; exactly one demand lane may then join it, saying the same id, and (when the peers
/// are authenticated) from the same peer. Anything else is refused with UnknownSession.
/// </summary>
public sealed class LanePairing<TSession> where TSession : class
{
    private readonly ConcurrentDictionary<string, Entry> _sessions = new();

    public IEnumerable<TSession> Sessions => _sessions.Values.Select(e => e.Session);

    /// <summary>False when a session with this id is already open.</summary>
    public bool TryOpen(string sessionId, PeerIdentity peer, TSession session) => _sessions.TryAdd(sessionId, new Entry(session, peer));

    public void Close(string sessionId) => _sessions.TryRemove(sessionId, out _);

    /// <summary>The session a demand lane joins, or the reason it may not (the typed refusal sent to the peer).</summary>
    public TSession? TryJoin(string sessionId, PeerIdentity peer, out CloseReason? refusal)
    {
        refusal = null;
        if (!_sessions.TryGetValue(sessionId, out var entry))
        {
            refusal = CloseReason.Refused($"no bulk session {sessionId} here", Protocol.ProtocolError.UnknownSession);
            return null;
        }
        if (entry.Peer.Verified && (!peer.Verified || peer.Name != entry.Peer.Name))
        {
            // A session id is secret enough against guessing; this keeps another node of the same CA from riding along.
            refusal = CloseReason.Refused($"session {sessionId} belongs to {entry.Peer.Name}, not {peer.Name}", Protocol.ProtocolError.UnknownSession);
            return null;
        }
        if (Interlocked.Exchange(ref entry.DemandClaimed, 1) != 0)
        {
            refusal = CloseReason.Refused($"session {sessionId} has its demand lane already", Protocol.ProtocolError.UnknownSession);
            return null;
        }
        return entry.Session;
    }

    private sealed class Entry(TSession session, PeerIdentity peer)
    {
        public TSession Session { get; } = session;

        public PeerIdentity Peer { get; } = peer;

        // One demand lane per session: a sink needs one, and each is a socket held open.
        public int DemandClaimed;
    }
}
