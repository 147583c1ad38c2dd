using StreamClone.Shared.Buffers;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// What a node that serves children (a source, a relay) bounds and tunes, whatever its role; every bound is
/// here with its reason. Timeouts (handshake, inventory, idle, write stall) are the transport's
/// (<see cref="TransportOptions"/>). A role's options derive from this record.
/// </summary>
public record DownstreamOptions
{
    /// <summary>
    /// zstd level; 0 = no compression, negative = zstd's fast levels. -1 by default: measured with
    /// ZstdSharp on 256 KiB memory-like batches here, level -1 compresses at ~380 MB/s per core to
    /// 38.4% against ~200 MB/s to 37.5% at level 1, and compression is the source's largest cost.
    /// Used for what is encoded per child: demand answers and batches re-encoded without the chunks the child holds.
    /// </summary>
    public int CompressionLevel { get; init; } = -1;

    /// <summary>
    /// Where sessions rent raw batches and payloads: the process's bounded pool; a test gives a
    /// node a pool of its own to count its leases exactly.
    /// </summary>
    public BatchBufferPool Buffers { get; init; } = BatchBufferPool.Shared;

    /// <summary>
    /// Sessions streaming at once; a child beyond this is refused with TooManySessions. Each holds
    /// a few batches in flight (read from the encoded stream's spill file, up to 16 per write) and the
    /// child's inventory; 64 keeps that under ~1 GiB for a few-GiB VM, and two cores cannot feed more
    /// children usefully (relays fan out beyond).
    /// </summary>
    public int MaxSessions { get; init; } = 64;

    /// <summary>
    /// Connections still in their handshake (no Hello yet, or offer sent and inventory not complete).
    /// Each may buffer up to <see cref="TransportOptions.ReceivePauseThreshold"/> (4 MiB) of unparsed
    /// bytes, so 64 bound that to 256 MiB. When a new connection goes over, the oldest pending one
    /// is dropped: a real child completes its handshake in milliseconds, so a flood of silent
    /// connections evicts itself, not the children behind it.
    /// </summary>
    public int MaxPendingConnections { get; init; } = 64;

    /// <summary>
    /// Inventory hashes kept per session (the child's store may list more; the rest are read and
    /// ignored: the inventory only saves bandwidth). 4 Mi hashes cover 16 GiB of distinct 4 KiB
    /// chunks and cost at most ~180 MiB per session (44 bytes per entry in a set grown with use).
    /// </summary>
    public int MaxInventoryHashes { get; init; } = 4 << 20;

    /// <summary>
    /// Mutual TLS on every connection (this node's certificate and its rule for its peers'): a peer without
    /// a certificate of ours gets no frame. Null = plain TCP, logged once as insecure.
    /// </summary>
    public TlsSettings? Tls { get; init; }

    public virtual void Validate()
    {
        if (CompressionLevel is < -7 or > 19)
        {
            throw new ArgumentOutOfRangeException(nameof(CompressionLevel), CompressionLevel, "zstd level must be -7 to 19 (0 = off).");
        }
        if (MaxSessions < 1 || MaxPendingConnections < 1 || MaxInventoryHashes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxSessions), "Sessions and pending connections must be at least 1, inventory hashes at least 0.");
        }
    }
}
