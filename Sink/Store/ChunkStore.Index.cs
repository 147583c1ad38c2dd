using StreamClone.Shared.Model;

namespace StreamClone.Sink.Store;

/// <summary>Where one copy of a hash's bytes lives, packed into 8 bytes for the index.</summary>
/// <remarks>
/// Bits: 63..48 snapshot ordinal, 47..32 object position in the offer, 31..0 chunk index. 2^32 chunks
/// is 16 TiB at 4 KiB chunks; 65536 snapshots and objects are far beyond one sink's needs, and the
/// limits are checked when a snapshot is opened.
/// </remarks>
internal readonly record struct ChunkLocation(int Snapshot, int ObjectPosition, long Index)
{
    public const int MaxSnapshots = ushort.MaxValue;
    public const int MaxObjects = ushort.MaxValue;
    public const long MaxChunks = uint.MaxValue;

    public ulong Pack() => ((ulong)(uint)Snapshot << 48) | ((ulong)(uint)ObjectPosition << 32) | (ulong)Index;

    public static ChunkLocation Unpack(ulong packed) =>
        new((int)(packed >> 48), (int)((packed >> 32) & 0xFFFF), (long)(packed & 0xFFFF_FFFF));
}

public sealed partial class ChunkStore
{
    // hash → one location holding its bytes. Dictionary<ChunkHash, ulong> costs ~52 bytes an entry
    // (32 key + 8 value + 8 hash/next + 4 bucket), which with 3 presence bits a chunk keeps a 1M-chunk
    // object under the 80-byte budget. A plain lock: it is held for one lookup or insert, and
    // ConcurrentDictionary would add a node object (~40 bytes) per entry.
    private readonly Lock _indexLock = new();
    private readonly Dictionary<ChunkHash, ulong> _index = [];

    /// <summary>True when bytes with this hash are held (written and verified) in any snapshot.</summary>
    public bool Contains(ChunkHash hash)
    {
        lock (_indexLock)
        {
            return _index.ContainsKey(hash);
        }
    }

    /// <summary>The unique hashes held: what the sink tells a source it need not send.</summary>
    public IReadOnlyList<ChunkHash> GetInventory()
    {
        lock (_indexLock)
        {
            return [.. _index.Keys];
        }
    }

    private int IndexCount
    {
        get
        {
            lock (_indexLock)
            {
                return _index.Count;
            }
        }
    }

    /// <summary>
    /// Grows the index once to hold <paramref name="additional"/> more hashes. Left to itself a
    /// Dictionary doubles, which right after a resize means ~100 bytes an entry plus both arrays alive
    /// during the copy; sizing for the worst case (every chunk unique) up front keeps it at ~52 bytes
    /// a chunk and never copies mid-stream.
    /// </summary>
    internal void ReserveIndex(long additional)
    {
        lock (_indexLock)
        {
            var wanted = _index.Count + additional;
            if (wanted > _index.Count && wanted <= Array.MaxLength)
            {
                _index.EnsureCapacity((int)wanted);
            }
        }
    }

    /// <summary>Records a location for <paramref name="hash"/> unless one is known already (the first copy stays canonical).</summary>
    internal void IndexAdd(ChunkHash hash, ChunkLocation location)
    {
        lock (_indexLock)
        {
            _index.TryAdd(hash, location.Pack());
        }
    }

    internal bool TryGetLocation(ChunkHash hash, out ChunkLocation location)
    {
        lock (_indexLock)
        {
            if (_index.TryGetValue(hash, out var packed))
            {
                location = ChunkLocation.Unpack(packed);
                return true;
            }
        }
        location = default;
        return false;
    }

    /// <summary>Forgets a location found damaged, unless the index has moved on to another one meanwhile.</summary>
    internal void IndexRemove(ChunkHash hash, ChunkLocation location)
    {
        lock (_indexLock)
        {
            if (_index.TryGetValue(hash, out var packed) && packed == location.Pack())
            {
                _index.Remove(hash);
            }
        }
    }
}
