using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.IO.Pipelines;
using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Unit.Protocol;

/// <summary>
/// FrameWriter serialises headers in place now; its bytes must be exactly what the writer that
/// serialised each header aside and copied it wrote (kept below as the reference, verbatim but for
/// its name), for every header size: the first guess, growing past it, and past the largest room.
/// </summary>
public class FrameWriterGoldenTests
{
    /// <summary>The writer before headers were written in place.</summary>
    private sealed class ReferenceFrameWriter
    {
        private readonly ArrayBufferWriter<byte> _headerBuffer = new(256);
        private uint _sequence;

        public int Write<THeader>(IBufferWriter<byte> output, FrameType type, THeader header, ReadOnlySpan<byte> payload)
        {
            _headerBuffer.ResetWrittenCount();
            MessagePackSerializer.Serialize(_headerBuffer, header, MessagePackDefaults.Options);
            var headerBytes = _headerBuffer.WrittenSpan;
            var total = Frame.PrefixSize + headerBytes.Length + payload.Length;

            var span = output.GetSpan(total);
            BinaryPrimitives.WriteUInt16LittleEndian(span, Frame.Magic);
            span[2] = (byte)type;
            span[3] = 0;
            BinaryPrimitives.WriteUInt32LittleEndian(span[4..], (uint)headerBytes.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(span[8..], (uint)payload.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(span[12..], _sequence++);
            headerBytes.CopyTo(span[Frame.PrefixSize..]);
            payload.CopyTo(span[(Frame.PrefixSize + headerBytes.Length)..]);

            var crc = new Crc32();
            crc.Append(span[..16]);
            crc.Append(span.Slice(Frame.PrefixSize, headerBytes.Length + payload.Length));
            BinaryPrimitives.WriteUInt32LittleEndian(span[16..], crc.GetCurrentHashAsUInt32());
            output.Advance(total);
            return total;
        }
    }

    private static ChunkBatchMessage Batch(int chunks, int seed)
    {
        var random = new Random(seed);
        var hashes = new byte[chunks * 32];
        random.NextBytes(hashes);
        return new ChunkBatchMessage
        {
            ObjectId = seed,
            FirstIndex = random.NextInt64(0, 1L << 40),
            Kinds = [.. Enumerable.Range(0, chunks).Select(i => (byte)(i % 3))],
            Hashes = hashes,
            Codec = PayloadCodec.Zstd,
            RawLength = chunks * 4096,
            RequestId = seed % 2 == 0 ? 0 : seed,
        };
    }

    private static byte[] Payload(int length, int seed)
    {
        var payload = new byte[length];
        new Random(seed).NextBytes(payload);
        return payload;
    }

    /// <summary>
    /// Headers of 1 to 1024 chunks (≈60 bytes to ≈34 KiB: inside the first room, growing it, and past
    /// its 16 KiB cap), small and large again, so every path of the writer runs in one sequence.
    /// </summary>
    private static readonly (ChunkBatchMessage Header, byte[] Payload)[] Frames =
        [.. new[] { 1, 4, 64, 16, 64, 1024, 64, 600, 2, 0 }.Select((chunks, i) => (Batch(chunks, i), Payload(i * 997 % 70000, i)))];

    [Fact]
    public void Frames_are_byte_for_byte_what_the_copying_writer_wrote()
    {
        var expected = new ArrayBufferWriter<byte>();
        var actual = new ArrayBufferWriter<byte>();
        var reference = new ReferenceFrameWriter();
        var writer = new FrameWriter();

        reference.Write(expected, FrameType.Hello, new HelloMessage { Role = "sink", SessionId = "abc", Lane = Lane.Demand, PeerName = "p" }, []);
        Assert.Equal(expected.WrittenCount, writer.Write(actual, FrameType.Hello, new HelloMessage { Role = "sink", SessionId = "abc", Lane = Lane.Demand, PeerName = "p" }, []));
        foreach (var (header, payload) in Frames)
        {
            var length = reference.Write(expected, FrameType.ChunkBatch, header, payload);
            Assert.Equal(length, writer.Write(actual, FrameType.ChunkBatch, header, payload));
            Assert.True(expected.WrittenSpan.SequenceEqual(actual.WrittenSpan), $"frames differ after a header of {header.Kinds.Length} chunks");
        }
        Assert.Equal(11u, writer.FramesWritten);
    }

    [Fact]
    public async Task Frames_written_into_a_pipe_of_small_segments_are_the_same_bytes()
    {
        var expected = new ArrayBufferWriter<byte>();
        var reference = new ReferenceFrameWriter();
        var pipe = new Pipe(new PipeOptions(minimumSegmentSize: 4096, pauseWriterThreshold: 0, useSynchronizationContext: false));
        var writer = new FrameWriter();
        foreach (var (header, payload) in Frames)
        {
            reference.Write(expected, FrameType.ChunkBatch, header, payload);
            writer.Write(pipe.Writer, FrameType.ChunkBatch, header, payload);
        }
        await pipe.Writer.CompleteAsync();

        var ct = TestContext.Current.CancellationToken;
        var read = await pipe.Reader.ReadAtLeastAsync(expected.WrittenCount + 1, ct);
        Assert.Equal(expected.WrittenSpan.ToArray(), read.Buffer.ToArray());

        // And the reader takes them back, headers intact.
        var buffer = read.Buffer;
        var frameReader = new FrameReader(TransportOptions.Default);
        foreach (var (header, payload) in Frames)
        {
            Assert.True(frameReader.TryRead(ref buffer, out var frame));
            Assert.Equal(header.Hashes, frame.DecodeHeader<ChunkBatchMessage>().Hashes);
            Assert.Equal(payload, frame.Payload.ToArray());
        }
        Assert.True(buffer.IsEmpty);
        pipe.Reader.AdvanceTo(read.Buffer.End);
    }
}
