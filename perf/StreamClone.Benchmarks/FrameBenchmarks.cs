using System.Buffers;
using BenchmarkDotNet.Attributes;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;

namespace StreamClone.Benchmarks;

/// <summary>Framing cost of one 64 KiB ChunkBatch: MessagePack header, copy, CRC-32.</summary>
[MemoryDiagnoser]
public class FrameBenchmarks
{
    private const int PayloadSize = 64 << 10;

    /// <summary>
    /// The reader checks sequence numbers, so one invocation reads a prebuilt run of frames 0..15
    /// with a fresh reader; the reader's 24-byte object is then 1.5 bytes per frame.
    /// </summary>
    private const int FramesPerRead = 16;

    private readonly ArrayBufferWriter<byte> _output = new(PayloadSize + 4096);
    private readonly FrameWriter _writer = new();
    private readonly byte[] _payload = new byte[PayloadSize];
    private ChunkBatchMessage _header = null!;
    private ReadOnlySequence<byte> _frames;

    [GlobalSetup]
    public void Setup()
    {
        new Random(42).NextBytes(_payload);
        // A 16-chunk batch header: 16 kinds, 16 hashes (the largest header of a 64 KiB batch).
        _header = new ChunkBatchMessage
        {
            ObjectId = 1,
            FirstIndex = 123_456,
            Kinds = Enumerable.Repeat((byte)ChunkEntryKind.Data, 16).ToArray(),
            Hashes = new byte[16 * 32],
            Codec = PayloadCodec.Zstd,
            RawLength = PayloadSize,
        };
        var all = new ArrayBufferWriter<byte>();
        var writer = new FrameWriter();
        for (var i = 0; i < FramesPerRead; i++)
        {
            writer.Write(all, FrameType.ChunkBatch, _header, _payload);
        }
        _frames = new ReadOnlySequence<byte>(all.WrittenMemory);
    }

    [Benchmark]
    public int Write()
    {
        _output.ResetWrittenCount();
        return _writer.Write(_output, FrameType.ChunkBatch, _header, _payload);
    }

    [Benchmark(OperationsPerInvoke = FramesPerRead)]
    public long TryRead()
    {
        var reader = new FrameReader(TransportOptions.Default);
        var buffer = _frames;
        long total = 0;
        while (reader.TryRead(ref buffer, out var frame))
        {
            total += frame.Payload.Length;
        }
        return total;
    }
}
