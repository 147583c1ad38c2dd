using BenchmarkDotNet.Attributes;
using StreamClone.Perf;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Protocol;

namespace StreamClone.Benchmarks;

/// <summary>
/// zstd on a batch payload as the sender builds it: the 16 Data pages of a 64 KiB batch, taken
/// from a generated memory image (zero pages and duplicates never reach the codec). The Runs pair
/// compares the two ways of compressing Data pages that lie between Zero/Known ones in the raw
/// buffer: concatenating them into a staging buffer first (the encoder before BatchBuffer), and
/// BatchCodec.CompressRuns straight from the raw buffer (the encoder now).
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

    /// <summary>A 64-page raw batch whose pages 0,1, 3,4,5, 7, … hold data: the 16 pages of <see cref="_raw"/> in 6 runs, zero pages between.</summary>
    private readonly byte[] _sparseRaw = new byte[4 * BatchSize];
    private readonly byte[] _staging = new byte[BatchSize];
    private Range[] _runs = [];

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

        const int Page = 4096;
        int[] runPages = [2, 3, 1, 4, 2, 4];
        var runs = new List<Range>();
        int at = 0, page = 0;
        foreach (var pages in runPages)
        {
            _raw.AsSpan(at, pages * Page).CopyTo(_sparseRaw.AsSpan(page * Page));
            runs.Add(new Range(page * Page, (page + pages) * Page));
            at += pages * Page;
            page += pages + 1 + (pages % 3);
        }
        _runs = [.. runs];
    }

    [Benchmark]
    public int Compress() => BatchCodec.Compress(_raw, _packed, Level).Length;

    /// <summary>The encoder before BatchBuffer: Data pages copied into a staging buffer, then one-shot zstd.</summary>
    [Benchmark]
    public int CompressStaged()
    {
        var at = 0;
        foreach (var run in _runs)
        {
            var bytes = _sparseRaw.AsSpan(run);
            bytes.CopyTo(_staging.AsSpan(at));
            at += bytes.Length;
        }
        return BatchCodec.Compress(_staging.AsSpan(0, at), _packed, Level).Length;
    }

    /// <summary>The encoder now: the same Data pages compressed straight from the raw buffer.</summary>
    [Benchmark]
    public int CompressRuns() => BatchCodec.CompressRuns(_sparseRaw, _runs, _packed, Level).Length;

    [Benchmark]
    public void Decompress() => BatchCodec.Decompress(_codec, _compressed, _restored);
}
