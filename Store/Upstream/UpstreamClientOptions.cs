namespace StreamClone.Store.Upstream;

/// <summary>A pulling node's policy (sink or relay): how it pulls (<see cref="Upstream"/>) and how long it keeps trying other upstreams when one dies.</summary>
public sealed record UpstreamClientOptions
{
    public UpstreamOptions Upstream { get; init; } = new();

    /// <summary>
    /// Total time a sink spends reattaching after its upstream dies, across every candidate and attempt:
    /// long enough for a relay to restart or an alternate to take over, short enough that a sink whose
    /// upstreams are all gone ends with one clear line instead of waiting forever. Readers wait this long too.
    /// </summary>
    public TimeSpan ReattachTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Pause before a candidate is tried again after every candidate failed once (not between candidates).</summary>
    public TimeSpan ReattachBackoff { get; init; } = TimeSpan.FromMilliseconds(250);
}
