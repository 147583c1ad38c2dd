using StreamClone.Shared.Model;

namespace StreamClone.Store;

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

    /// <summary>
    /// Most index entries reserved ahead of arriving chunks: 1 Mi entries (~52 MiB) is a 4 GiB object
    /// at 4 KiB chunks, the size the 80-bytes-a-chunk budget is measured at (ChunkStoreMemoryTests).
    /// </summary>
    internal const long MaxIndexReservation = 1 << 20;

    /// <summary>True when bytes with this hash are held (written and verified) in any snapshot.</summary>
    public bool Contains(ChunkHash hash)
    {
        lock (_indexLock)
        {
            return _index.ContainsKey(hash);
        }
    }

    /// <summary>Every unique hash held, whoever it came from: for tests and local tools, never for a peer.</summary>
    internal IReadOnlyList<ChunkHash> GetInventory()
    {
        lock (_indexLock)
        {
            return [.. _index.Keys];
        }
    }

    /// <summary>
    /// The hashes a sink tells <paramref name="upstream"/> it need not send. The rule: an upstream
    /// learns only hashes of snapshots received from that same upstream (the snapshot being resumed
    /// counts when it came from there too). The store's inventory would otherwise tell any source
    /// what every other source sent (whether a host holds a known file, key or image), and the
    /// upstream is the user's trust decision (the address given to --connect), not a claim of the
    /// peer. A hash whose indexed copy lies in another upstream's snapshot is left out even if this
    /// upstream sent it too: it is then sent again, costing bandwidth, never disclosure.
    /// </summary>
    public IReadOnlyList<ChunkHash> GetInventory(string upstream)
    {
        ArgumentNullException.ThrowIfNull(upstream);
        bool[] shared;
        lock (_snapshotsLock)
        {
            // An evicted slot is false: its entries left the index with it.
            shared = [.. _snapshots.Select(s => s is not null && s.Upstream == upstream)];
        }
        var hashes = new List<ChunkHash>();
        lock (_indexLock)
        {
            foreach (var (hash, packed) in _index)
            {
                var ordinal = ChunkLocation.Unpack(packed).Snapshot;
                if (ordinal < shared.Length && shared[ordinal])
                {
                    hashes.Add(hash);
                }
            }
        }
        return hashes;
    }

    /// <summary>
    /// The name an upstream is known by in the store: the host the user gave to --connect, without
    /// the port (a source listens on a fresh port each run, and the host is the machine trusted).
    /// Once peers authenticate (TLS), this becomes the peer certificate's name.
    /// </summary>
    public static string UpstreamName(System.Net.EndPoint endPoint) => endPoint switch
    {
        System.Net.IPEndPoint ip => ip.Address.ToString(),
        System.Net.DnsEndPoint dns => dns.Host.ToLowerInvariant(),
        _ => endPoint.ToString() ?? "",
    };

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
        // Only up to MaxIndexReservation at once: an offer's size is a peer's claim, and sizing for
        // it would let one offer take ~52 bytes per claimed chunk (14 GB for 1 TiB) before a single
        // chunk arrived. Past that the Dictionary grows as chunks actually arrive.
        additional = Math.Min(additional, MaxIndexReservation);
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

    /// <summary>
    /// Removes every entry pointing into snapshot <paramref name="ordinal"/> (its eviction) and returns
    /// their hashes, so copies of them elsewhere can be indexed again.
    /// </summary>
    internal HashSet<ChunkHash> IndexRemoveSnapshot(int ordinal)
    {
        var removed = new HashSet<ChunkHash>();
        lock (_indexLock)
        {
            foreach (var (hash, packed) in _index)
            {
                if (ChunkLocation.Unpack(packed).Snapshot == ordinal)
                {
                    removed.Add(hash);
                }
            }
            foreach (var hash in removed)
            {
                _index.Remove(hash);
            }
        }
        return removed;
    }
}
