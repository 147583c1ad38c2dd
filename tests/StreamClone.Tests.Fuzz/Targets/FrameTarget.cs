using System.Buffers;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

using StreamClone.Tests.Utilities;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// Frame prefix and header: <see cref="FrameReader"/> over the input as one segment or split into small
/// ones (the split is derived from the input, so a saved crash replays the same way), each frame's header
/// decoded and checked as its receiver would.
/// </summary>
internal sealed class FrameTarget() : FuzzTarget("frame", typeof(ProtocolViolationException), typeof(InvalidDataException))
{
    private static readonly TransportOptions Options = new();

    public override IReadOnlyList<byte[]> Dictionary { get; } =
        [.. MessagePackTokens.All, [0x53, 0x43], .. Enum.GetValues<FrameType>().Select(t => new[] { (byte)t })];

    public override IEnumerable<byte[]> Seeds()
    {
        var conversation = new ArrayBufferWriter<byte>();
        var all = new FrameWriter();
        foreach (var (type, header, payload) in Frames())
        {
            var one = new ArrayBufferWriter<byte>();
            new FrameWriter().Write(one, type, header, payload);
            yield return one.WrittenSpan.ToArray();
            all.Write(conversation, type, header, payload);
        }
        yield return conversation.WrittenSpan.ToArray();
    }

    private static IEnumerable<(FrameType, object, byte[])> Frames()
    {
        yield return (FrameType.Hello, new HelloMessage { Role = "sink", SessionId = "s-1", PeerName = "fuzz" }, []);
        yield return (FrameType.SnapshotOffer, FuzzSnapshot.Offer(), []);
        var hashes = new byte[3 * ChunkHash.Size];
        ChunkHash.Compute("a"u8).Write(hashes);
        yield return (FrameType.Inventory, new InventoryMessage { Count = 3, Last = true }, hashes);
        foreach (var (header, payload) in FuzzSnapshot.Batches())
        {
            yield return (FrameType.ChunkBatch, header, payload);
        }
        yield return (FrameType.DemandRequest, new DemandRequestMessage { RequestId = 7, ObjectId = 0, FirstIndex = 3, Count = 2 }, []);
        yield return (FrameType.SnapshotComplete, new SnapshotCompleteMessage { RootHashes = [new byte[32], new byte[32]], ChunksSent = 40 }, []);
        yield return (FrameType.SnapshotStored, new SnapshotStoredMessage { SnapshotId = "fuzz-1", ChunksReceived = 40 }, []);
        yield return (FrameType.Error, new ErrorMessage { Code = ProtocolError.HashMismatch, Message = "bad" }, []);
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        var buffer = Segments.Split(input.ToArray(), FuzzSnapshot.SegmentSizeFor(input));
        var reader = new FrameReader(Options);
        while (reader.TryRead(ref buffer, out var frame))
        {
            MessageChecks.Check(frame);
        }
    }
}
