using System.Buffers;
using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Unit.Protocol;

/// <summary>
/// MessagePack decodes nil into any reference, whatever the C# type says: a header that is nil, or holds
/// nil where a string, list or byte array belongs, must be a malformed header at decode, never a
/// NullReferenceException where the field is first used. Found by the fuzz targets msg-inventory,
/// msg-chunk-batch and msg-offer (tests/StreamClone.Tests.Fuzz).
/// </summary>
public class NilHeaderTests
{
    private static Frame FrameOf(FrameType type, byte[] header) =>
        new(type, 0, new ReadOnlySequence<byte>(header), ReadOnlySequence<byte>.Empty);

    private delegate void Writes(ref MessagePackWriter writer);

    private static byte[] Pack(Writes write)
    {
        var output = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(output);
        write(ref writer);
        writer.Flush();
        return output.WrittenSpan.ToArray();
    }

    public static TheoryData<FrameType> Types => [.. Enum.GetValues<FrameType>()];

    [Theory]
    [MemberData(nameof(Types))]
    public void A_nil_header_is_malformed(FrameType type)
    {
        var frame = FrameOf(type, [0xc0]);
        Action decode = type switch
        {
            FrameType.Hello => () => frame.DecodeHeader<HelloMessage>(),
            FrameType.Error => () => frame.DecodeHeader<ErrorMessage>(),
            FrameType.SnapshotOffer => () => frame.DecodeHeader<SnapshotOfferMessage>(),
            FrameType.Inventory => () => frame.DecodeHeader<InventoryMessage>(),
            FrameType.ChunkBatch => () => frame.DecodeHeader<ChunkBatchMessage>(),
            FrameType.DemandRequest => () => frame.DecodeHeader<DemandRequestMessage>(),
            FrameType.SnapshotComplete => () => frame.DecodeHeader<SnapshotCompleteMessage>(),
            FrameType.SnapshotStored => () => frame.DecodeHeader<SnapshotStoredMessage>(),
            FrameType.MulticastJoin => () => frame.DecodeHeader<MulticastJoinMessage>(),
            FrameType.MulticastReport => () => frame.DecodeHeader<MulticastReportMessage>(),
            FrameType.MulticastLeave => () => frame.DecodeHeader<MulticastLeaveMessage>(),
            _ => throw new ArgumentOutOfRangeException(nameof(type)),
        };

        var e = Assert.Throws<ProtocolViolationException>(decode);
        Assert.Equal(ProtocolError.MalformedHeader, e.Code);
    }

    [Fact]
    public void The_hand_written_batch_decodes_when_its_kinds_are_present()
    {
        // Guards the byte layout the nil tests below rely on: with a kinds array in place, the same bytes decode.
        var header = Pack((ref w) =>
        {
            w.WriteArrayHeader(7);
            w.Write(0);
            w.Write(0);
            w.Write(new byte[] { 0 });
            w.Write(ReadOnlySpan<byte>.Empty);
            w.Write(0);
            w.Write(0);
            w.Write(0);
        });

        Assert.Equal([0], FrameOf(FrameType.ChunkBatch, header).DecodeHeader<ChunkBatchMessage>().Kinds);
    }

    [Fact]
    public void A_batch_with_nil_kinds_is_malformed_before_it_is_laid_out()
    {
        // [ObjectId 0, FirstIndex 0, Kinds nil, Hashes bin(0), Codec 0, RawLength 0, RequestId 0]
        var header = Pack((ref w) =>
        {
            w.WriteArrayHeader(7);
            w.Write(0);
            w.Write(0);
            w.WriteNil();
            w.Write(ReadOnlySpan<byte>.Empty);
            w.Write(0);
            w.Write(0);
            w.Write(0);
        });
        var frame = FrameOf(FrameType.ChunkBatch, header);
        IReadOnlyList<ObjectInfo> objects = [new ObjectInfo { Id = 0, Name = "m", Kind = ObjectKind.Memory, Size = 4096, ChunkSize = 4096 }];

        var e = Assert.Throws<ProtocolViolationException>(() => BatchLayout.Validate(frame.DecodeHeader<ChunkBatchMessage>(), objects));
        Assert.Equal(ProtocolError.MalformedHeader, e.Code);
    }

    [Fact]
    public void An_offer_with_a_nil_object_is_malformed()
    {
        var offer = new SnapshotOfferMessage { SnapshotId = "s1", Objects = [new ObjectInfo { Id = 0, Name = "m", Size = 4096, ChunkSize = 4096 }] };
        var bytes = MessagePackSerializer.Serialize(offer, MessagePackDefaults.Options);
        // The offer's last member is the object list: a one-element array whose element (the last 7+ bytes) becomes nil.
        var listAt = Array.LastIndexOf(bytes, (byte)0x91);
        byte[] header = [.. bytes[..(listAt + 1)], 0xc0];

        var e = Assert.Throws<ProtocolViolationException>(() => FrameOf(FrameType.SnapshotOffer, header).DecodeHeader<SnapshotOfferMessage>());
        Assert.Equal(ProtocolError.MalformedHeader, e.Code);
    }

    [Fact]
    public void An_offer_with_nil_objects_or_id_is_malformed()
    {
        // [SnapshotId nil, CreatedUtc, Origin "", HashAlgorithm, Objects nil]
        var header = Pack((ref w) =>
        {
            w.WriteArrayHeader(5);
            w.WriteNil();
            w.Write(DateTime.UnixEpoch);
            w.Write("");
            w.Write(HashAlgorithms.Blake3);
            w.WriteNil();
        });

        var e = Assert.Throws<ProtocolViolationException>(() => FrameOf(FrameType.SnapshotOffer, header).DecodeHeader<SnapshotOfferMessage>());
        Assert.Equal(ProtocolError.MalformedHeader, e.Code);
    }

    [Fact]
    public void A_completion_with_a_nil_root_hash_is_malformed()
    {
        var header = Pack((ref w) =>
        {
            w.WriteArrayHeader(2);
            w.WriteArrayHeader(2);
            w.Write(new byte[32]);
            w.WriteNil();
            w.Write(5);
        });

        var e = Assert.Throws<ProtocolViolationException>(() => FrameOf(FrameType.SnapshotComplete, header).DecodeHeader<SnapshotCompleteMessage>());
        Assert.Equal(ProtocolError.MalformedHeader, e.Code);
    }
}
