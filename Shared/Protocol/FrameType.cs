namespace StreamClone.Shared.Protocol;

/// <summary>Frame types. Numbers are wire values: never reuse a retired one.</summary>
public enum FrameType : byte
{
    /// <summary>Either side, first frame on a connection: <see cref="HelloMessage"/>.</summary>
    Hello = 1,
    /// <summary>Either side, then close: <see cref="ErrorMessage"/>.</summary>
    Error = 2,
    /// <summary>Source → sink, bulk lane: the snapshot's objects (<see cref="SnapshotOfferMessage"/>).</summary>
    SnapshotOffer = 3,
    /// <summary>Sink → source, bulk lane: hashes the sink already holds; payload = N × 32 bytes.</summary>
    Inventory = 4,
    /// <summary>Source → sink, either lane: a range of chunks, payload = compressed data of the Data entries.</summary>
    ChunkBatch = 5,
    /// <summary>Sink → source, demand lane: fetch a range now (<see cref="DemandRequestMessage"/>).</summary>
    DemandRequest = 6,
    /// <summary>Source → sink, bulk lane: every chunk was sent; carries per-object root hashes.</summary>
    SnapshotComplete = 7,
    /// <summary>Sink → source, bulk lane: the snapshot is verified and durable.</summary>
    SnapshotStored = 8,
    /// <summary>Relay → multicast receiver, bulk lane (the receiver's control connection): the group, port, sender id and the
    /// snapshot's AES-GCM key, and the stream position from which batches come by multicast (Shared/Multicast).</summary>
    MulticastJoin = 9,
    /// <summary>Multicast receiver → relay, bulk lane: periodic feedback (next batch it needs in order, loss and receive rate,
    /// timestamp echo for the group round-trip time) and NACKs of missing fragments.</summary>
    MulticastReport = 10,
    /// <summary>Relay → multicast receiver, bulk lane: multicast ends for this receiver (it fell too far behind, or the relay
    /// stops sending); batches from the given position on come over this TCP lane.</summary>
    MulticastLeave = 11,
}

/// <summary>Which connection of a session a Hello opens.</summary>
public enum Lane : byte
{
    /// <summary>Offer, inventory, the bulk stream of batches, completion.</summary>
    Bulk = 1,
    /// <summary>Demand requests and their answers only: a separate TCP connection so an answer never
    /// waits behind bulk bytes in our pipe or in the kernel's send buffer.</summary>
    Demand = 2,
}
