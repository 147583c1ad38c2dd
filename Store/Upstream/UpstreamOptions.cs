using StreamClone.Shared.Buffers;
using StreamClone.Shared.Transport;

namespace StreamClone.Store.Upstream;

/// <summary>How a node pulls a snapshot from its upstream (a sink's or a relay's <see cref="UpstreamSession"/>).</summary>
public sealed record UpstreamOptions
{
    /// <summary>The role this node announces in Hello: a sink, or a relay pulling into its cache.</summary>
    public string Role { get; init; } = NodeRoles.Sink;

    /// <summary>Workers verifying (decompress + BLAKE3) batches in parallel; storing stays in order.</summary>
    public int Parallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// Received batches buffered before the receive loop stops reading the socket (≈ 4 × 256 KiB
    /// raw per worker): enough to keep verification busy, small enough that backpressure reaches
    /// the source within a few milliseconds of work.
    /// </summary>
    public int StageCapacity { get; init; } = 4;

    /// <summary>
    /// Where the session rents payload copies and decompressed batches: the process's bounded pool;
    /// a test gives a session a pool of its own to count its leases exactly.
    /// </summary>
    public BatchBufferPool Buffers { get; init; } = BatchBufferPool.Shared;

    /// <summary>
    /// Payload bytes of bulk batches held out of order, waiting for an earlier sequence (multicast datagrams arrive
    /// out of order, and a lagging receiver gets the gap over TCP): 64 MiB covers a few hundred batches of typical
    /// compressed size, about half a second of a 1 Gbit/s stream, and is what one session may make a node hold.
    /// Past it a batch is dropped (its feed must bring it again), never waited for.
    /// </summary>
    public long ReorderWindowBytes { get; init; } = 64L << 20;

    /// <summary>
    /// The snapshot this session must be offered (null: any). A sink reattaching after its upstream died accepts
    /// only the snapshot it was pulling; another one is refused before anything is stored.
    /// </summary>
    public string? RequiredSnapshotId { get; init; }

    /// <summary>Taps a relay forwards from (offer, each bulk batch before verify, completion); null for a plain sink.</summary>
    public IUpstreamObserver? Observer { get; init; }

    /// <summary>Peer name sent in Hello (logs on the source; a label only, marked unverified, when the source runs without TLS).</summary>
    public string PeerName { get; init; } = Environment.MachineName;

    /// <summary>Mutual TLS for both lanes (this node's certificate and its rule for the source's); null = plain TCP, logged as insecure.</summary>
    public TlsSettings? Tls { get; init; }

    /// <summary>
    /// The interface (by name) on the upstream's multicast segment: the session asks for the bulk stream by multicast
    /// and takes it there if the upstream multicasts (the TCP lane stays for control and what multicast cannot bring).
    /// Null: TCP only.
    /// </summary>
    public string? MulticastInterface { get; init; }
}
