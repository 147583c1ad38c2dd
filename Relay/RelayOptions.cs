using StreamClone.Shared.Fanout;
using StreamClone.Store.Upstream;

namespace StreamClone.Relay;

/// <summary>A relay's policy: how it pulls (<see cref="Pull"/>) and how it serves its children (the <see cref="DownstreamOptions"/> it derives from).</summary>
public sealed record RelayOptions : DownstreamOptions
{
    /// <summary>
    /// The cache bound when none is given: 64 GiB holds a few whole VM snapshots (memory and disks) of the sizes we
    /// clone, so the snapshot being relayed and its predecessor (the base that dedups the next one) both stay, while a
    /// relay on a shared host never grows past a fixed share of its disk. A snapshot larger than the bound is refused.
    /// </summary>
    public const long DefaultCacheBytes = 64L << 30;

    /// <summary>The upstreams to pull from (HOST:PORT), in order of preference; the offer's hints follow them on reattach.</summary>
    public required IReadOnlyList<string> Upstreams { get; init; }

    /// <summary>The pulling side: role relay, reattach deadline; its <see cref="UpstreamOptions.Observer"/> is set by the node.</summary>
    public UpstreamClientOptions Pull { get; init; } = new();

    /// <summary>Also multicast the relayed stream to children on this relay's segment that ask for it; null: TCP children only.</summary>
    public MulticastFanoutOptions? Multicast { get; init; }
}
