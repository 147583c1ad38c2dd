using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace StreamClone.Shared.Model;

/// <summary>
/// A chunk's content address: the 256-bit BLAKE3 digest of its bytes. Identity is shared across
/// snapshots and tenants, so it must be cryptographic: a crafted collision would let one tenant's
/// bytes stand in for another's. The all-zero value is reserved as the "zero chunk" mark in
/// manifests (BLAKE3 producing 32 zero bytes is not a practical event).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public readonly struct ChunkHash : IEquatable<ChunkHash>
{
    public const int Size = 32;

    private readonly ulong _a, _b, _c, _d;

    private ChunkHash(ulong a, ulong b, ulong c, ulong d) => (_a, _b, _c, _d) = (a, b, c, d);

    /// <summary>The zero mark: the chunk is all zero bytes and carries no data.</summary>
    public static ChunkHash ZeroMark => default;

    public bool IsZeroMark => (_a | _b | _c | _d) == 0;

    public static ChunkHash Compute(ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[Size];
        Blake3.Hasher.Hash(data, digest);
        return Read(digest);
    }

    public static ChunkHash Read(ReadOnlySpan<byte> source) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(source),
        BinaryPrimitives.ReadUInt64LittleEndian(source[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[16..]),
        BinaryPrimitives.ReadUInt64LittleEndian(source[24..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, _a);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], _b);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], _c);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[24..], _d);
    }

    public byte[] ToArray()
    {
        var bytes = new byte[Size];
        Write(bytes);
        return bytes;
    }

    public bool Equals(ChunkHash other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;

    public override bool Equals(object? obj) => obj is ChunkHash other && Equals(other);

    // The digest is uniformly distributed already; any 32 bits of it make a good hash code.
    public override int GetHashCode() => (int)_a;

    public static bool operator ==(ChunkHash left, ChunkHash right) => left.Equals(right);

    public static bool operator !=(ChunkHash left, ChunkHash right) => !left.Equals(right);

    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[Size];
        Write(bytes);
        return Convert.ToHexStringLower(bytes);
    }

    /// <summary>First 8 bytes in hex: enough to tell chunks apart in logs.</summary>
    public string ToShortString() => ToString()[..16];
}
