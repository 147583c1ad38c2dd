namespace StreamClone.Shared;

/// <summary>
/// Every buffer limit of the transport in one place, each with its reason. No limit is 0
/// (unbounded): unlimited buffering lets a slow or hostile peer grow our memory without bound.
/// </summary>
public sealed record TransportOptions
{
    /// <summary>
    /// Largest MessagePack header accepted. A batch header is ~40 bytes + 33 per chunk; 256 batch
    /// chunks need under 9 KiB, an offer with a few hundred objects a few KiB. 1 MiB leaves room and
    /// stops a hostile length before it sizes anything.
    /// </summary>
    public int MaxHeaderBytes { get; init; } = 1 << 20;

    /// <summary>
    /// Largest payload accepted: a batch's compressed data (at most its raw size when incompressible,
    /// batch size ≤ 4 MiB) or an inventory frame (≤ 64 Ki hashes = 2 MiB). 8 MiB covers both.
    /// </summary>
    public int MaxPayloadBytes { get; init; } = 8 << 20;

    /// <summary>
    /// Bulk lane: unflushed bytes in our pipe before the writer waits (Kestrel's pause threshold).
    /// A few batches' worth keeps the socket busy without hiding megabytes behind a demand answer;
    /// resumes at half.
    /// </summary>
    public long BulkPauseWriterThreshold { get; init; } = 256 << 10;

    /// <summary>Receive side: unparsed bytes buffered before the socket loop stops reading (backpressure to the sender).</summary>
    public long ReceivePauseThreshold { get; init; } = 4 << 20;

    /// <summary>
    /// TCP_NOTSENT_LOWAT on the bulk socket: how many not-yet-sent bytes the kernel may queue. The
    /// default (unlimited, bounded only by the 4 MiB+ send buffer) puts whole megabytes in front of
    /// anything written later; 128 KiB is ~75 µs at loopback speed and still keeps the link full.
    /// Demand answers travel on their own connection as well, so this bounds the bulk lane's share of
    /// shared buffers rather than ordering between lanes. 0 = leave the kernel default (for measuring).
    /// </summary>
    public int BulkNotSentLowWatermark { get; init; } = 128 << 10;

    /// <summary>How long a peer may stay silent during the handshake before it is dropped.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A bulk-lane receive that sees no byte for this long fails: the sink expects data from the
    /// offer to SnapshotComplete, the source expects the inventory and the final acknowledgement.
    /// 60 s is far above any legitimate gap (a stage's few ms of work, a sink's final fsync, QEMU
    /// pausing its migration stream for a moment) and still ends a dead session within a minute.
    /// Demand lanes are idle by nature and have no such limit: TCP keepalive and their bulk
    /// session's lifetime bound them.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A send whose flush waits this long while the socket hands no byte to the kernel fails: the
    /// peer stopped reading (its window is closed). Progress of any size resets it, so a slow link
    /// is never cut, only a stopped one. Same reasoning as <see cref="IdleTimeout"/> for 60 s.
    /// </summary>
    public TimeSpan WriteStallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The source's limit on offer + whole inventory, however the sink paces it (a trickle of tiny
    /// frames never trips <see cref="IdleTimeout"/>). 120 s: an inventory of 16 Mi hashes is 512 MiB,
    /// ~50 s at 10 MB/s; a real sink sends it at its link's speed right after the offer.
    /// </summary>
    public TimeSpan InventoryTimeout { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// TCP keepalive on every socket (SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT): first probe after 30 s
    /// of silence, then every 10 s, dead after 3 unanswered. An idle demand lane whose peer vanished
    /// (power loss, a dropped NAT entry) is found within ~60 s instead of never; the cost is one
    /// empty segment per 30 s on an idle connection.
    /// </summary>
    public TimeSpan KeepAliveIdle { get; init; } = TimeSpan.FromSeconds(30);

    /// <inheritdoc cref="KeepAliveIdle"/>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <inheritdoc cref="KeepAliveIdle"/>
    public int KeepAliveProbes { get; init; } = 3;

    public static TransportOptions Default { get; } = new();
}
