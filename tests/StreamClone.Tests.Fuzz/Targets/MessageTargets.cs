using System.Buffers;
using System.Buffers.Binary;
using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// What a receiver does with each frame type's header (and, for batches, its payload): decode with the
/// frame's <see cref="Frame.DecodeHeader{T}"/>, then the checks that run before any field is used.
/// </summary>
internal static class MessageChecks
{
    public static readonly IReadOnlyList<ObjectInfo> Objects = FuzzSnapshot.Offer().Objects;

    public static void Check(Frame frame)
    {
        switch (frame.Type)
        {
            case FrameType.Hello:
                frame.DecodeHeader<HelloMessage>();
                break;
            case FrameType.Error:
                frame.DecodeHeader<ErrorMessage>();
                break;
            case FrameType.SnapshotOffer:
                CheckOffer(frame.DecodeHeader<SnapshotOfferMessage>());
                break;
            case FrameType.Inventory:
                CheckInventory(frame.DecodeHeader<InventoryMessage>(), frame.Payload);
                break;
            case FrameType.ChunkBatch:
                CheckBatch(frame.DecodeHeader<ChunkBatchMessage>(), frame.Payload.ToArray());
                break;
            case FrameType.DemandRequest:
                frame.DecodeHeader<DemandRequestMessage>();
                break;
            case FrameType.SnapshotComplete:
                frame.DecodeHeader<SnapshotCompleteMessage>();
                break;
            case FrameType.SnapshotStored:
                frame.DecodeHeader<SnapshotStoredMessage>();
                break;
            // The range rules every receiver and the relay apply right after decoding: they must judge any decoded value.
            case FrameType.MulticastJoin:
                frame.DecodeHeader<MulticastJoinMessage>().Problem();
                break;
            case FrameType.MulticastReport:
                frame.DecodeHeader<MulticastReportMessage>().Problem();
                break;
            case FrameType.MulticastLeave:
                frame.DecodeHeader<MulticastLeaveMessage>().Problem();
                break;
        }
    }

    /// <summary>The one offer rule the sink and its store apply (the id becomes a directory name).</summary>
    public static void CheckOffer(SnapshotOfferMessage offer)
    {
        OfferRules.Validate(offer);
        foreach (var o in offer.Objects)
        {
            _ = ChunkMath.ChunkCount(o.Size, o.ChunkSize);
        }
    }

    /// <summary>SourceSession.Bulk's inventory receive: the count must match the payload before hashes are read.</summary>
    public static void CheckInventory(InventoryMessage inventory, ReadOnlySequence<byte> payload)
    {
        if (inventory.Count < 0 || inventory.Count > WireLimits.MaxInventoryHashesPerFrame || payload.Length != (long)inventory.Count * ChunkHash.Size)
        {
            throw new ProtocolViolationException(ProtocolError.MalformedHeader, $"inventory of {inventory.Count} hashes in {payload.Length} bytes");
        }
        var reader = new SequenceReader<byte>(payload);
        Span<byte> hash = stackalloc byte[ChunkHash.Size];
        for (var i = 0; i < inventory.Count; i++)
        {
            reader.TryCopyTo(hash);
            reader.Advance(ChunkHash.Size);
            _ = ChunkHash.Read(hash);
        }
    }

    /// <summary>The sink's verify step: layout against the offer, decompress, hash every Data chunk.</summary>
    public static void CheckBatch(ChunkBatchMessage header, byte[] payload)
    {
        var rented = BatchBufferPool.Shared.Rent(payload.Length);
        payload.CopyTo(rented.Span);
        using var verified = BatchVerifier.Verify(new ReceivedBatch { Header = header, Payload = rented }, Objects, BatchBufferPool.Shared);
    }
}

/// <summary>One frame type's header as a receiver decodes it; batches carry their payload after a 2-byte header length.</summary>
internal sealed class MessageTarget<T>(string name, FrameType type, Func<IEnumerable<T>> seeds) : FuzzTarget(name, typeof(ProtocolViolationException), typeof(InvalidDataException))
{
    public override IEnumerable<byte[]> Seeds() =>
        seeds().Select(m => MessagePackSerializer.Serialize(m, MessagePackDefaults.Options));

    public override void Run(ReadOnlySpan<byte> input)
    {
        var header = new ReadOnlySequence<byte>(input.ToArray());
        MessageChecks.Check(new Frame(type, 0, header, ReadOnlySequence<byte>.Empty));
    }
}

/// <summary>A batch header and its payload: [u16 LE header length][header][payload].</summary>
internal sealed class ChunkBatchTarget() : FuzzTarget("msg-chunk-batch", typeof(ProtocolViolationException))
{
    public override IEnumerable<byte[]> Seeds() =>
        FuzzSnapshot.Batches().Select(b => Pack(MessagePackSerializer.Serialize(b.Header, MessagePackDefaults.Options), b.Payload));

    private static byte[] Pack(byte[] header, byte[] payload)
    {
        var bytes = new byte[2 + header.Length + payload.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes, (ushort)header.Length);
        header.CopyTo(bytes, 2);
        payload.CopyTo(bytes, 2 + header.Length);
        return bytes;
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < 2)
        {
            return;
        }
        var headerLength = Math.Min(BinaryPrimitives.ReadUInt16LittleEndian(input), input.Length - 2);
        var header = new ReadOnlySequence<byte>(input.Slice(2, headerLength).ToArray());
        var payload = new ReadOnlySequence<byte>(input[(2 + headerLength)..].ToArray());
        var frame = new Frame(FrameType.ChunkBatch, 0, header, payload);
        MessageChecks.CheckBatch(frame.DecodeHeader<ChunkBatchMessage>(), payload.ToArray());
    }
}
