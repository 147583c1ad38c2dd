using System.Buffers;

namespace StreamClone.Shared.Diagnostics;

/// <summary>
/// The <c>peer</c> tag of a connection's byte counters, bounded. A peer's name comes from the peer
/// (its Hello, later its certificate), and every distinct tag value is a time series the exporter
/// keeps for the life of the process, so a hostile peer that connects under ever new names must not
/// be able to grow that set: the first <see cref="MaxPeers"/> well-formed names get their own label,
/// later ones share <see cref="Other"/>; an empty name is <see cref="Unknown"/> and one that is too
/// long or has characters a host name does not is <see cref="Invalid"/>. The process keeps one
/// set (<see cref="Process"/>), which every connection's counters use.
/// </summary>
public sealed class PeerLabels(int maxPeers)
{
    /// <summary>
    /// Distinct peer labels per process. A node talks to a handful of peers (a source to its sinks
    /// and relays, a sink to one source or relay); 64 covers a wide fan-out with room for restarts
    /// under new names, while 64 × 2 lanes × 2 counters stays a small scrape.
    /// </summary>
    public const int MaxPeers = 64;

    /// <summary>Longest name kept as a label: a host name's label is at most 63 characters (RFC 1035).</summary>
    public const int MaxNameLength = 64;

    public const string Unknown = "unknown";
    public const string Invalid = "invalid";
    public const string Other = "other";

    private static readonly SearchValues<char> NameChars =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");

    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);

    /// <summary>The labels of this process's connections.</summary>
    public static PeerLabels Process { get; } = new(MaxPeers);

    /// <summary>The label for a peer that calls itself <paramref name="name"/>.</summary>
    public string Of(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return Unknown;
        }
        if (name.Length > MaxNameLength || name.AsSpan().ContainsAnyExcept(NameChars))
        {
            return Invalid;
        }
        lock (_seen)
        {
            if (_seen.Contains(name))
            {
                return name;
            }
            if (_seen.Count < maxPeers)
            {
                _seen.Add(name);
                return name;
            }
        }
        return Other;
    }
}
