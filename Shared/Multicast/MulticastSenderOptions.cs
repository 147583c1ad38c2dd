using System.Net;

namespace StreamClone.Shared.Multicast;

/// <summary>Settings of one <see cref="MulticastSender"/>, each with its reason.</summary>
public sealed record MulticastSenderOptions
{
    /// <summary>IPv4 multicast group and port the batches go to.</summary>
    public required IPEndPoint Group { get; init; }

    /// <summary>The interface on the receivers' segment (IP_MULTICAST_IF), by name.</summary>
    public required string InterfaceName { get; init; }

    /// <summary>IP_MULTICAST_TTL. 1 keeps the stream on the relay's own segment, which is where its receivers are; a
    /// router would need multicast routing configured anyway.</summary>
    public int TimeToLive { get; init; } = 1;

    /// <summary>Operator floor of the send rate (bytes/s): TFMCC can collapse to a trickle on a noisy receiver (NRL#48
    /// reports 11 kbps); below the floor a receiver is better moved to TCP by the lag rule. 1 MB/s.</summary>
    public long MinRateBytesPerSecond { get; init; } = 1_000_000;

    /// <summary>Operator ceiling (bytes/s): a share of the segment left for other traffic. 118 MB/s ≈ 95% of 1 Gbit/s.</summary>
    public long MaxRateBytesPerSecond { get; init; } = 118_000_000;

    /// <summary>Rate before any feedback (bytes/s); slow start doubles it per round trip from there. 4 MB/s.</summary>
    public long InitialRateBytesPerSecond { get; init; } = 4_000_000;

    /// <summary>NORM's K: receivers back off on [0, K·GRTT]; the sender aggregates NACKs for GRTT·(K+1). 4 is NORM's
    /// default for multicast feedback; NACKs here travel on TCP, so a smaller K only costs suppression we do not rely on.</summary>
    public int BackoffFactor { get; init; } = 4;

    /// <summary>GRTT before any echo. NORM starts at 0.25 s for WANs; one LAN segment has sub-millisecond round trips,
    /// and a too-large start only slows the first repairs. 10 ms.</summary>
    public TimeSpan InitialGrtt { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>How often the GRTT may fall (by at most ×0.9): NORM probes every 1–30 s; 1 s.</summary>
    public TimeSpan GrttProbeInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// A receiver whose next in-order batch is this many batches behind the send head is reported through the lag
    /// callback and leaves rate control: repairing so much by multicast would hold every other receiver back, while the
    /// relay's log serves it over TCP at its own pace (uftp's -N rule by distance instead of NAK share). 64 batches is
    /// several MiB, far more than a GRTT of loss at any rate we send.
    /// </summary>
    public long MaxLagBatches { get; init; } = 64;

    /// <summary>While idle, a heartbeat (the send head) goes out this often, so a receiver that lost the tail NACKs it and
    /// echoes keep measuring the GRTT. 20 ms.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>With no report from any receiver for this long, the rate halves (once per timeout): receivers report every
    /// <see cref="MulticastReceiverOptions.ReportInterval"/> (50 ms), so 250 ms is five reports missed in a row.</summary>
    public TimeSpan FeedbackTimeout { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Token bucket depth as time at the current rate: covers the ~1 ms granularity of timers, so pacing holds the
    /// average without a busy wait. 4 ms (at 100 MB/s, 400 KB: within a default receive buffer's doubled 425 KB).</summary>
    public TimeSpan PacingBurst { get; init; } = TimeSpan.FromMilliseconds(4);
}
