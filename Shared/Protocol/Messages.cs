using MessagePack;
using StreamClone.Shared.Model;

namespace StreamClone.Shared.Protocol;

public static class ProtocolVersions
{
    /// <summary>The one version this build speaks. A peer with another is refused with <see cref="ProtocolError.UnsupportedVersion"/>.</summary>
    public const int Current = 1;
}

/// <summary>
/// First frame in each direction. The sink opens the bulk lane with a fresh SessionId and the demand
/// lane with the same id, so the source can pair them. This is where TLS and peer authentication
/// will hook in (a later issue): the handshake runs after the stream is secured and before any data.
/// </summary>
[MessagePackObject]
public sealed class HelloMessage : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public int ProtocolVersion { get; set; } = ProtocolVersions.Current;
    [Key(1)] public string Role { get; set; } = "";
    [Key(2)] public Lane Lane { get; set; } = Lane.Bulk;
    [Key(3)] public string SessionId { get; set; } = "";
    [Key(4)] public string PeerName { get; set; } = "";

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Role, nameof(HelloMessage), nameof(Role));
        NilMembers.Reject(SessionId, nameof(HelloMessage), nameof(SessionId));
        NilMembers.Reject(PeerName, nameof(HelloMessage), nameof(PeerName));
    }
}

[MessagePackObject]
public sealed class ErrorMessage : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public ProtocolError Code { get; set; }
    [Key(1)] public string Message { get; set; } = "";

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Message, nameof(ErrorMessage), nameof(Message));
    }
}

/// <summary>An object as announced before its data: everything of <see cref="ManifestObject"/> but the hashes.</summary>
[MessagePackObject]
public sealed class ObjectInfo : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public int Id { get; set; }
    [Key(1)] public string Name { get; set; } = "";
    [Key(2)] public ObjectKind Kind { get; set; }
    [Key(3)] public long Size { get; set; }
    [Key(4)] public int ChunkSize { get; set; }

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Name, nameof(ObjectInfo), nameof(Name));
    }
}

[MessagePackObject]
public sealed class SnapshotOfferMessage : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public string SnapshotId { get; set; } = "";
    [Key(1)] public DateTime CreatedUtc { get; set; }
    [Key(2)] public string Origin { get; set; } = "";
    [Key(3)] public string HashAlgorithm { get; set; } = HashAlgorithms.Blake3;
    [Key(4)] public List<ObjectInfo> Objects { get; set; } = [];
    /// <summary>
    /// Where a child reattaches when the offering node dies: the offering node's own upstream chain as "host:port",
    /// nearest first (a source sends none, a relay its upstream and that node's list). Bounded by
    /// <see cref="WireLimits.MaxUpstreamHints"/> and checked by <see cref="OfferRules"/>; a child dials them like any peer
    /// (mutual TLS), so a lying relay can only send it to nodes of its own cluster.
    /// </summary>
    [Key(5)] public List<string> Upstreams { get; set; } = [];

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.RejectItems(Upstreams, nameof(SnapshotOfferMessage), nameof(Upstreams));
        NilMembers.Reject(SnapshotId, nameof(SnapshotOfferMessage), nameof(SnapshotId));
        NilMembers.Reject(Origin, nameof(SnapshotOfferMessage), nameof(Origin));
        NilMembers.Reject(HashAlgorithm, nameof(SnapshotOfferMessage), nameof(HashAlgorithm));
        NilMembers.RejectItems(Objects, nameof(SnapshotOfferMessage), nameof(Objects));
    }
}

[MessagePackObject]
public sealed class InventoryMessage
{
    /// <summary>Number of 32-byte hashes in the payload.</summary>
    [Key(0)] public int Count { get; set; }
    /// <summary>True on the last inventory frame; the source starts the bulk stream after it.</summary>
    [Key(1)] public bool Last { get; set; }
    /// <summary>
    /// On the last frame: the child would take the bulk stream by multicast (it has an interface on the sender's
    /// segment). A sender that multicasts answers with MulticastJoin before the first batch; one that does not ignores it.
    /// </summary>
    [Key(2)] public bool WantsMulticast { get; set; }
}

/// <summary>How one chunk of a batch travels.</summary>
public enum ChunkEntryKind : byte
{
    /// <summary>All zero bytes: no hash, no data.</summary>
    Zero = 0,
    /// <summary>Its bytes are in the batch payload; the sink verifies them against the hash.</summary>
    Data = 1,
    /// <summary>The sink already holds bytes with this hash (its inventory, or earlier in this stream): no data.</summary>
    Known = 2,
}

/// <summary>
/// A run of consecutive chunks [FirstIndex, FirstIndex+Count) of one object. Identity is per chunk
/// (one hash each) while compression runs over the batch: the Data entries' bytes are concatenated
/// in index order and compressed as one block, so small chunks still expose zero and duplicate
/// pages without paying for compressing 4 KiB at a time.
/// </summary>
[MessagePackObject]
public sealed class ChunkBatchMessage : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public int ObjectId { get; set; }
    [Key(1)] public long FirstIndex { get; set; }
    /// <summary>One <see cref="ChunkEntryKind"/> per chunk.</summary>
    [Key(2)] public byte[] Kinds { get; set; } = [];
    /// <summary>32 bytes per non-zero entry, in index order.</summary>
    [Key(3)] public byte[] Hashes { get; set; } = [];
    [Key(4)] public PayloadCodec Codec { get; set; }
    /// <summary>Total uncompressed bytes of the Data entries.</summary>
    [Key(5)] public int RawLength { get; set; }
    /// <summary>Non-zero when this batch answers a demand request.</summary>
    [Key(6)] public long RequestId { get; set; }
    /// <summary>
    /// Bulk batches: the batch's 1-based position in the snapshot's encoded stream, the same at every hop, on TCP and on
    /// multicast (a receiver takes them strictly in order: a Known entry may name a chunk of an earlier batch).
    /// Demand answers: 0.
    /// </summary>
    [Key(7)] public long Sequence { get; set; }

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Kinds, nameof(ChunkBatchMessage), nameof(Kinds));
        NilMembers.Reject(Hashes, nameof(ChunkBatchMessage), nameof(Hashes));
    }
}

public enum PayloadCodec : byte
{
    None = 0,
    Zstd = 1,
}

[MessagePackObject]
public sealed class DemandRequestMessage
{
    [Key(0)] public long RequestId { get; set; }
    [Key(1)] public int ObjectId { get; set; }
    [Key(2)] public long FirstIndex { get; set; }
    [Key(3)] public int Count { get; set; }
    /// <summary>Send every non-zero chunk as data, even ones the sink's inventory listed (the sink found its copy damaged).</summary>
    [Key(4)] public bool ForceData { get; set; }
}

[MessagePackObject]
public sealed class SnapshotCompleteMessage : IMessagePackSerializationCallbackReceiver
{
    /// <summary>Per object (by position in the offer), BLAKE3 over its chunk-hash list (see <see cref="ManifestObject.ComputeRootHash"/>).</summary>
    [Key(0)] public List<byte[]> RootHashes { get; set; } = [];
    [Key(1)] public long ChunksSent { get; set; }
    /// <summary>
    /// Sequence of the stream's last bulk batch (0: not told, the TCP lane brought every batch before this frame). A
    /// multicast receiver may get this frame before the group brought the last batches: it applies the completion only
    /// once every batch up to here is in.
    /// </summary>
    [Key(2)] public long LastSequence { get; set; }

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.RejectItems(RootHashes, nameof(SnapshotCompleteMessage), nameof(RootHashes));
    }
}

[MessagePackObject]
public sealed class SnapshotStoredMessage : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public string SnapshotId { get; set; } = "";
    [Key(1)] public long ChunksReceived { get; set; }

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(SnapshotId, nameof(SnapshotStoredMessage), nameof(SnapshotId));
    }
}
