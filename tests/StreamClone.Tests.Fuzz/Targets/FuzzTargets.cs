using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>Every target, by name.</summary>
public static class FuzzTargets
{
    public static readonly IReadOnlyList<(string Name, Func<IFuzzTarget> Create)> All =
    [
        ("frame", () => new FrameTarget()),
        ("msg-hello", () => new MessageTarget<HelloMessage>("msg-hello", FrameType.Hello, () => [new HelloMessage { Role = "sink", Lane = Lane.Demand, SessionId = "abc-1", PeerName = "n" }])),
        ("msg-error", () => new MessageTarget<ErrorMessage>("msg-error", FrameType.Error, () => [new ErrorMessage { Code = ProtocolError.BadChunkPlacement, Message = "no" }])),
        ("msg-offer", () => new MessageTarget<SnapshotOfferMessage>("msg-offer", FrameType.SnapshotOffer, () => [FuzzSnapshot.Offer()])),
        ("msg-inventory", () => new MessageTarget<InventoryMessage>("msg-inventory", FrameType.Inventory, () => [new InventoryMessage { Count = 0, Last = true }])),
        ("msg-chunk-batch", () => new ChunkBatchTarget()),
        ("msg-demand-request", () => new MessageTarget<DemandRequestMessage>("msg-demand-request", FrameType.DemandRequest, () => [new DemandRequestMessage { RequestId = 9, ObjectId = 1, FirstIndex = 2, Count = 1, ForceData = true }])),
        ("msg-snapshot-complete", () => new MessageTarget<SnapshotCompleteMessage>("msg-snapshot-complete", FrameType.SnapshotComplete, () => [new SnapshotCompleteMessage { RootHashes = [new byte[32], new byte[32], new byte[32]], ChunksSent = 4200 }])),
        ("msg-snapshot-stored", () => new MessageTarget<SnapshotStoredMessage>("msg-snapshot-stored", FrameType.SnapshotStored, () => [new SnapshotStoredMessage { SnapshotId = "fuzz-1", ChunksReceived = 4200 }])),
        ("manifest", () => new ManifestTarget()),
        ("qemu-stream", () => new QemuStreamTarget()),
        ("device-state", () => new DeviceStateTarget()),
        ("journal", () => new JournalTarget()),
        ("store-replay", () => new StoreReplayTarget()),
        ("qmp", () => new QmpTarget()),
        ("demand", () => new DemandTarget()),
    ];

    public static IFuzzTarget Create(string name) =>
        All.FirstOrDefault(t => t.Name == name).Create?.Invoke() ?? throw new ArgumentException($"no fuzz target named {name}");
}
