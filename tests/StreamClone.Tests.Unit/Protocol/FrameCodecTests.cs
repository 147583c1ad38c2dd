using System.Buffers;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Unit.Protocol;

public class FrameCodecTests
{
    private static byte[] WriteFrames(params (FrameType Type, object Header, byte[] Payload)[] frames)
    {
        var writer = new FrameWriter();
        var output = new ArrayBufferWriter<byte>();
        foreach (var (type, header, payload) in frames)
        {
            switch (header)
            {
                case HelloMessage h:
                    writer.Write(output, type, h, payload);
                    break;
                case ChunkBatchMessage b:
                    writer.Write(output, type, b, payload);
                    break;
                default:
                    throw new ArgumentException("unsupported header in test");
            }
        }
        return output.WrittenSpan.ToArray();
    }

    private static byte[] SampleStream() => WriteFrames(
        (FrameType.Hello, new HelloMessage { Role = "sink", SessionId = "abc", Lane = Lane.Demand }, []),
        (FrameType.ChunkBatch, new ChunkBatchMessage { ObjectId = 1, FirstIndex = 7, Kinds = [1, 0], Hashes = new byte[32], RawLength = 5 }, [1, 2, 3, 4, 5]));

    [Fact]
    public void Frames_round_trip_with_headers_and_payloads()
    {
        var bytes = new ReadOnlySequence<byte>(SampleStream());
        var reader = new FrameReader(TransportOptions.Default);

        Assert.True(reader.TryRead(ref bytes, out var hello));
        Assert.Equal(FrameType.Hello, hello.Type);
        var helloMessage = hello.DecodeHeader<HelloMessage>();
        Assert.Equal(("sink", "abc", Lane.Demand), (helloMessage.Role, helloMessage.SessionId, helloMessage.Lane));

        Assert.True(reader.TryRead(ref bytes, out var batch));
        Assert.Equal(1u, batch.Sequence);
        Assert.Equal(7, batch.DecodeHeader<ChunkBatchMessage>().FirstIndex);
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5 }, batch.Payload.ToArray());
        Assert.True(bytes.IsEmpty);
        Assert.False(reader.TryRead(ref bytes, out _));
    }

    [Fact]
    public void Every_truncation_point_reports_not_yet_and_consumes_nothing()
    {
        var whole = SampleStream();
        for (var cut = 0; cut < whole.Length; cut++)
        {
            var reader = new FrameReader(TransportOptions.Default);
            var bytes = new ReadOnlySequence<byte>(whole, 0, cut);
            var frames = 0;
            while (reader.TryRead(ref bytes, out _))
            {
                frames++;
            }
            // Only whole frames come out; the partial rest stays in the buffer for the next read.
            Assert.True(frames < 2, $"cut at {cut} yielded {frames} frames");
            Assert.Equal(cut - ConsumedBy(frames, whole), bytes.Length);
        }
    }

    private static int ConsumedBy(int frames, byte[] whole)
    {
        var bytes = new ReadOnlySequence<byte>(whole);
        var reader = new FrameReader(TransportOptions.Default);
        var before = bytes.Length;
        for (var i = 0; i < frames; i++)
        {
            reader.TryRead(ref bytes, out _);
        }
        return (int)(before - bytes.Length);
    }

    [Fact]
    public void One_byte_segments_parse_like_one_buffer()
    {
        var whole = SampleStream();
        var bytes = Segments.OneBytePerSegment(whole);
        var reader = new FrameReader(TransportOptions.Default);
        Assert.True(reader.TryRead(ref bytes, out var first));
        Assert.Equal("abc", first.DecodeHeader<HelloMessage>().SessionId);
        Assert.True(reader.TryRead(ref bytes, out var second));
        Assert.Equal(new byte[] { 1, 2, 3, 4, 5 }, second.Payload.ToArray());
    }

    [Fact]
    public void A_flipped_byte_anywhere_is_rejected()
    {
        var whole = SampleStream();
        for (var at = 0; at < whole.Length; at++)
        {
            var corrupt = (byte[])whole.Clone();
            corrupt[at] ^= 0x40;
            var bytes = new ReadOnlySequence<byte>(corrupt);
            var reader = new FrameReader(TransportOptions.Default);
            var error = Record.Exception(() =>
            {
                while (reader.TryRead(ref bytes, out var frame))
                {
                    _ = frame.Type == FrameType.Hello ? frame.DecodeHeader<HelloMessage>() : (object)frame.DecodeHeader<ChunkBatchMessage>();
                }
            });
            // Either a clear protocol violation, or (for a flipped length) a frame that never completes:
            // never a silently accepted corrupt frame.
            if (error is null)
            {
                Assert.False(bytes.IsEmpty, $"flip at {at} was accepted");
            }
            else
            {
                Assert.IsType<ProtocolViolationException>(error);
            }
        }
    }

    [Fact]
    public void A_hostile_length_is_rejected_before_it_sizes_anything()
    {
        var frame = SampleStream();
        // Payload length field = 2 GiB.
        BitConverter.TryWriteBytes(frame.AsSpan(8, 4), 0x8000_0000u);
        var bytes = new ReadOnlySequence<byte>(frame);
        var error = Assert.Throws<ProtocolViolationException>(() => new FrameReader(TransportOptions.Default).TryRead(ref bytes, out _));
        Assert.Equal(ProtocolError.FrameTooLarge, error.Code);
    }

    [Fact]
    public void A_replayed_frame_is_out_of_sequence()
    {
        var whole = SampleStream();
        var firstLength = ConsumedBy(1, whole);
        var replayed = whole[..firstLength].Concat(whole[..firstLength]).ToArray();
        var bytes = new ReadOnlySequence<byte>(replayed);
        var reader = new FrameReader(TransportOptions.Default);
        Assert.True(reader.TryRead(ref bytes, out _));
        var error = Assert.Throws<ProtocolViolationException>(() => reader.TryRead(ref bytes, out _));
        Assert.Equal(ProtocolError.OutOfSequence, error.Code);
    }

    [Fact]
    public void A_foreign_stream_fails_on_magic()
    {
        var bytes = new ReadOnlySequence<byte>("GET / HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());
        var error = Assert.Throws<ProtocolViolationException>(() => new FrameReader(TransportOptions.Default).TryRead(ref bytes, out _));
        Assert.Equal(ProtocolError.BadMagic, error.Code);
    }

    [Fact]
    public void A_header_that_is_not_the_expected_message_is_malformed()
    {
        var bytes = new ReadOnlySequence<byte>(SampleStream());
        var reader = new FrameReader(TransportOptions.Default);
        reader.TryRead(ref bytes, out var hello);
        var error = Assert.Throws<ProtocolViolationException>(() => hello.DecodeHeader<ChunkBatchMessage>());
        Assert.Equal(ProtocolError.MalformedHeader, error.Code);
    }
}
