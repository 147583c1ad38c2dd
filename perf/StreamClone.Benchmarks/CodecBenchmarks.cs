using BenchmarkDotNet.Attributes;
using StreamClone.Perf;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Protocol;

namespace StreamClone.Benchmarks;

/// <summary>
/// zstd on a batch payload as the sender builds it: the 16 Data pages of a 64 KiB batch, taken
/// from a generated memory image (zero pages and duplicates never reach the codec).
/// </summary>
[MemoryDiagnoser]
public class CodecBenchmarks
{
    private const int BatchSize = 64 << 10;

    private readonly byte[] _raw = new byte[BatchSize];
    private readonly byte[] _restored = new byte[BatchSize];
    private byte[] _packed = [];
    private byte[] _compressed = [];
    private PayloadCodec _codec;

    [Params(1, 3)]
    public int Level { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        MemoryImageSample.FillDataPages(_raw, seed: 42);
        _packed = new byte[BatchCodec.MaxCompressedLength(BatchSize)];
        var (codec, length) = BatchCodec.Compress(_raw, _packed, Level);
        _codec = codec;
        _compressed = _packed[..length];
        Console.WriteLine($"// level {Level}: 64 KiB memory-like batch -> {length} bytes ({(double)length / BatchSize:P1})");
    }

    [Benchmark]
    public int Compress() => BatchCodec.Compress(_raw, _packed, Level).Length;

    [Benchmark]
    public void Decompress() => BatchCodec.Decompress(_codec, _compressed, _restored);
}
