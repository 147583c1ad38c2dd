using System.Numerics;
using System.Runtime.CompilerServices;

namespace StreamClone.Perf;

/// <summary>
/// xoshiro256** (Blackman and Vigna): one multiply, a rotate and a few xors per 64 bits, so random
/// pages fill at several GB/s. Own implementation rather than <see cref="Random"/> because image
/// bytes must stay identical across runtime versions for a given seed (the repeatability contract
/// of <see cref="ImageGenerator"/>), and System.Random makes no such promise. A mutable struct:
/// keep it in a field or local and pass it by ref, never by value.
/// </summary>
internal struct Xoshiro256
{
    private ulong _s0, _s1, _s2, _s3;

    public Xoshiro256(ulong seed)
    {
        // SplitMix64 spreads a small seed over the 256-bit state (the authors' recommendation; an
        // all-zero state would be a fixed point).
        _s0 = SplitMix(ref seed);
        _s1 = SplitMix(ref seed);
        _s2 = SplitMix(ref seed);
        _s3 = SplitMix(ref seed);
    }

    private static ulong SplitMix(ref ulong x)
    {
        var z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong NextUInt64()
    {
        var result = BitOperations.RotateLeft(_s1 * 5, 7) * 9;
        var t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = BitOperations.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, <paramref name="bound"/>) by Lemire's multiply-shift (bias below 2^-32 for the bounds used here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Next(int bound) => (int)(((NextUInt64() >> 32) * (ulong)(uint)bound) >> 32);

    /// <summary>Uniform in [0, 1) with 53 bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>Geometric run length ≥ 1 with the given mean (memoryless, like allocation runs).</summary>
    public int NextRunLength(double mean)
    {
        if (mean <= 1)
        {
            return 1;
        }
        var u = 1.0 - NextDouble(); // (0, 1]: Log never sees 0
        var length = 1 + Math.Floor(Math.Log(u) / Math.Log(1 - (1 / mean)));
        return length >= int.MaxValue ? int.MaxValue : (int)length;
    }

    public void Fill(Span<byte> destination)
    {
        var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(destination);
        for (var i = 0; i < words.Length; i++)
        {
            words[i] = NextUInt64();
        }
        for (var i = words.Length * 8; i < destination.Length; i++)
        {
            destination[i] = (byte)NextUInt64();
        }
    }
}
