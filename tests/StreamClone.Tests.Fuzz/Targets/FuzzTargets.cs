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
        ("multicast-datagram", () => new MulticastDatagramTarget()),
        ("msg-multicast-join", () => new MessageTarget<MulticastJoinMessage>("msg-multicast-join", FrameType.MulticastJoin, () => [new MulticastJoinMessage { GroupAddress = "239.1.1.1", Port = 5001, SenderId = 1, KeyId = 1, Key = new byte[32], FirstSequence = 1, GrttMicroseconds = 1000, MinRateBytesPerSecond = 1, MaxRateBytesPerSecond = 2 }])),
        ("msg-multicast-report", () => new MessageTarget<MulticastReportMessage>("msg-multicast-report", FrameType.MulticastReport, () => [new MulticastReportMessage { NextSequence = 3, HighestSequence = 9, LossEventRate = 0.01, TimestampEcho = 77, Nacks = [new MulticastNack { Sequence = 3, Missing = [5] }, new MulticastNack { Sequence = 4 }] }])),
        ("msg-multicast-leave", () => new MessageTarget<MulticastLeaveMessage>("msg-multicast-leave", FrameType.MulticastLeave, () => [new MulticastLeaveMessage { ResumeFromSequence = 4, Reason = MulticastLeaveReason.Lagging, Detail = "behind" }])),
    ];

    public static IFuzzTarget Create(string name) =>
        All.FirstOrDefault(t => t.Name == name).Create?.Invoke() ?? throw new ArgumentException($"no fuzz target named {name}");
}
