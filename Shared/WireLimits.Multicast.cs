namespace StreamClone.Shared;

/// <summary>Limits of multicast (Shared/Multicast): the datagram layout and what a multicast control message may carry.</summary>
public static partial class WireLimits
{
    /// <summary>
    /// Largest multicast datagram (UDP payload): 1500 (Ethernet MTU) − 20 (IPv4 header, no options) − 8 (UDP header).
    /// A larger one is fragmented by IP, and losing any IP fragment loses the whole datagram.
    /// </summary>
    public const int MaxMulticastDatagramBytes = 1500 - 20 - 8;

    /// <summary>AES-256-GCM: the per-snapshot key a receiver gets in <see cref="Protocol.MulticastJoinMessage"/>.</summary>
    public const int MulticastKeyBytes = 32;

    /// <summary>
    /// Largest batch (the stored bytes of one encoded-stream entry) multicast carries: a batch's raw bytes are capped at
    /// <see cref="MaxBatchRawBytes"/> (an incompressible batch is stored as is) plus its header (~33 bytes per chunk,
    /// ≤ 1024 chunks ≈ 34 KiB) and frame prefix; 256 KiB of headroom covers that. A receiver reserves at most this
    /// much for a batch whatever a datagram claims.
    /// </summary>
    public const int MaxMulticastBatchBytes = MaxBatchRawBytes + (256 << 10);

    /// <summary>
    /// Fragments of the largest batch: <see cref="MaxMulticastBatchBytes"/> over the datagram payload
    /// (<see cref="Multicast.MulticastDatagram.MaxFragmentPayload"/>), rounded up. Bounds a fragment index and a NACK bitmap.
    /// </summary>
    public const int MaxMulticastFragments =
        (MaxMulticastBatchBytes + Multicast.MulticastDatagram.MaxFragmentPayload - 1) / Multicast.MulticastDatagram.MaxFragmentPayload;

    /// <summary>Bytes of one NACK's fragment bitmap: one bit per fragment of the largest batch.</summary>
    public const int MaxMulticastNackBitmapBytes = (MaxMulticastFragments + 7) / 8;

    /// <summary>
    /// NACK entries (one per batch) in one report: a report is at most 64 × ~400 bytes ≈ 26 KiB, far under
    /// <see cref="TransportOptions.MaxHeaderBytes"/>. A receiver with more batches missing NACKs the oldest 64 first
    /// (it applies batches in order, so those are what it needs next); the rest go in the next round.
    /// </summary>
    public const int MaxMulticastNacks = 64;

    /// <summary>Longest group address text ("255.255.255.255" is 15; an IPv6 group with a scope needs more).</summary>
    public const int MaxMulticastGroupLength = 64;

    /// <summary>Longest reason text in a <see cref="Protocol.MulticastLeaveMessage"/> (logged as one line).</summary>
    public const int MaxMulticastLeaveReasonLength = 256;
}
