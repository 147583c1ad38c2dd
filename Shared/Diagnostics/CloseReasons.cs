using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Diagnostics;

/// <summary>
/// The <c>reason</c> tag of <see cref="StreamCloneMetrics.ConnectionsClosed"/>: a close reason's
/// kind from a fixed set, never its text (which names addresses, sizes and ids). Until connections
/// record a typed reason, the kind is read off the text the transport writes: a
/// <see cref="ProtocolError"/> name for an error frame sent or received ("HashMismatch: …"),
/// <see cref="Timeout"/> for the idle and write-stall timeouts, <see cref="Local"/> for a close this
/// node chose, <see cref="PeerClosed"/> for a peer that hung up, <see cref="Other"/> for the rest.
/// </summary>
public static class CloseReasons
{
    public const string Local = "local";
    public const string Timeout = "timeout";
    public const string PeerClosed = "peer_closed";
    public const string Evicted = "evicted";
    public const string Other = "other";

    private static readonly Dictionary<string, string> ErrorNames =
        Enum.GetValues<ProtocolError>().ToDictionary(e => e.ToString(), e => e.ToString(), StringComparer.Ordinal);

    /// <summary>The kind of a close reason, one of a fixed set (the <see cref="ProtocolError"/> names and the constants here).</summary>
    public static string KindOf(string? reason)
    {
        if (string.IsNullOrEmpty(reason))
        {
            return Other;
        }
        var colon = reason.IndexOf(':', StringComparison.Ordinal);
        if (colon > 0 && ErrorNames.TryGetValue(reason[..colon], out var code))
        {
            return code;
        }
        // A loop this node cancelled records OperationCanceledException's own message as the reason.
        if (reason is "closed locally" or "session ended" or "source shutting down" or "The operation was canceled."
            || reason.Contains(": receive cancelled", StringComparison.Ordinal))
        {
            return Local;
        }
        if (reason.Contains("no bytes from the peer for", StringComparison.Ordinal) || reason.Contains("the peer stopped reading", StringComparison.Ordinal))
        {
            return Timeout;
        }
        if (reason.StartsWith("dropped: more than", StringComparison.Ordinal))
        {
            return Evicted;
        }
        if (reason.Contains("peer closed the connection", StringComparison.Ordinal))
        {
            return PeerClosed;
        }
        return Other;
    }
}
