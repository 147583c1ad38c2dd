using BenchmarkDotNet.Attributes;
using StreamClone.Shared.Chunking;

namespace StreamClone.Benchmarks;

/// <summary>Zero-page test on a 4 KiB zero page: the worst case, every byte is read.</summary>
[MemoryDiagnoser]
public class ZeroDetectorBenchmarks
{
    private readonly byte[] _page = new byte[4096];

    [Benchmark]
    public bool IsAllZero() => ZeroDetector.IsAllZero(_page);
}
