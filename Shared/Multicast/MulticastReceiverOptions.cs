using StreamClone.Shared.Diagnostics;

namespace StreamClone.Shared.Multicast;

/// <summary>Settings of one <see cref="MulticastReceiver"/>, each with its reason.</summary>
public sealed record MulticastReceiverOptions
{
    /// <summary>The interface on the sender's segment, by name (the group is joined there).</summary>
    public required string InterfaceName { get; init; }

    /// <summary>Who receives, for the NACK metric.</summary>
    public MetricRole Role { get; init; } = MetricRole.Sink;

    /// <summary>
    /// SO_RCVBUF asked for. The default 212,992 B holds ≈1.7 ms at 1 Gbit/s, less than one scheduling hiccup on a busy
    /// host; 32 MiB holds ≈0.27 s. The kernel caps it at net.core.rmem_max unless we hold CAP_NET_ADMIN (SO_RCVBUFFORCE).
    /// </summary>
    public int ReceiveBufferBytes { get; init; } = 32 << 20;

    /// <summary>
    /// Bytes of batches held for reassembly and in-order delivery (incomplete, or complete behind a missing one): what a
    /// sender can make us allocate. 64 MiB holds 16 of the largest batches, over half a second at 1 Gbit/s, for repairs
    /// to arrive; the batch we need next is always accepted, so the window can never deadlock.
    /// </summary>
    public long WindowBytes { get; init; } = 64 << 20;

    /// <summary>How far ahead of the next in-order batch a datagram may be (bounds gap scans). Same order as the sender's
    /// <see cref="MulticastSenderOptions.MaxLagBatches"/>, with room: 1024.</summary>
    public long MaxBatchesAhead { get; init; } = 1024;

    /// <summary>NORM's K (see <see cref="MulticastSenderOptions.BackoffFactor"/>); keep both ends equal.</summary>
    public int BackoffFactor { get; init; } = 4;

    /// <summary>NORM's group size estimate for the backoff's λ = ln(size)+1; NORM's default is 1000.</summary>
    public int GroupSizeEstimate { get; init; } = 1000;

    /// <summary>Feedback period: TFMCC wants about one report per round trip from the limiting receiver; 50 ms is a few
    /// rate updates per second at a modest cost on the control lane.</summary>
    public TimeSpan ReportInterval { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>With nothing heard for this long while batches are incomplete, every missing fragment counts as lost (the
    /// tail of a burst leaves no later datagram to reveal it). Several heartbeat intervals: 100 ms.</summary>
    public TimeSpan TailTimeout { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Timer resolution of backoffs and reports: 2 ms, under a LAN GRTT·K.</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(2);
}
