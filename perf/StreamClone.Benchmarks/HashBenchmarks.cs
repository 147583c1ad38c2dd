using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using StreamClone.Shared.Model;

namespace StreamClone.Benchmarks;

/// <summary>
/// The content hash's cost: BLAKE3 (<see cref="ChunkHash"/>) against SHA-256 on the same input,
/// per 4 KiB chunk and per 64 KiB block.
/// </summary>
[MemoryDiagnoser]
public class HashBenchmarks
{
    private byte[] _data = [];

    [Params(4096, 65536)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = new byte[Size];
        new Random(42).NextBytes(_data);
    }

    [Benchmark(Baseline = true)]
    public ChunkHash Blake3() => ChunkHash.Compute(_data);

    [Benchmark]
    public byte Sha256()
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(_data, digest);
        return digest[0];
    }
}
