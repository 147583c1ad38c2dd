using BenchmarkDotNet.Attributes;
using StreamClone.Perf;

namespace StreamClone.Benchmarks;

/// <summary>
/// Page synthesis without the file: one 4 MiB block of a Memory or Disk image. The generator's
/// target is ≥ 500 MB/s on one core so that a 4 GiB image costs seconds, bounded by the disk.
/// </summary>
[MemoryDiagnoser]
public class ImageGeneratorBenchmarks
{
    private readonly byte[] _block = new byte[4 << 20];
    private PageSource _source = null!;

    [Params(ImageProfile.Memory, ImageProfile.Disk)]
    public ImageProfile Profile { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _source = new PageSource(Profile, seed: 1);
        // Past the first blocks: the duplicate reservoir is full, as for most of a real image.
        for (var i = 0; i < 4; i++)
        {
            _source.Fill(_block);
        }
    }

    [Benchmark]
    public void FillBlock() => _source.Fill(_block);
}
