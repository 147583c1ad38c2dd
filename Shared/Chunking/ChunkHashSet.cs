using StreamClone.Shared.Model;

namespace StreamClone.Shared.Chunking;

/// <summary>
/// A set of chunk hashes that grows with use, in small steps. One HashSet sized for a whole
/// snapshot would cost ~40 bytes per chunk up front (10 GiB for a 1 TiB VM, per session), and one
/// grown by doubling puts a new large-object-heap array on every resize, each a blocking gen2
/// collection (tens of ms of demand latency). Here 4096 partitions, chosen by the hash code's top
/// 12 bits, each grow on their own: a resize copies 1/4096 of the set, and a partition's arrays
/// stay under the 85,000-byte LOH threshold (~2,000 entries) until the set holds ~8 M hashes.
/// Not thread-safe for writers; concurrent readers are fine once writing has stopped.
/// </summary>
public sealed class ChunkHashSet
{
    private const int PartitionBits = 12;

    private readonly HashSet<ChunkHash>?[] _partitions = new HashSet<ChunkHash>?[1 << PartitionBits];

    public long Count { get; private set; }

    /// <summary>Adds <paramref name="hash"/>; false when it was there already.</summary>
    public bool Add(ChunkHash hash)
    {
        ref var partition = ref _partitions[PartitionOf(hash)];
        partition ??= [];
        if (!partition.Add(hash))
        {
            return false;
        }
        Count++;
        return true;
    }

    public bool Contains(ChunkHash hash) => _partitions[PartitionOf(hash)]?.Contains(hash) == true;

    // HashSet buckets by the hash code modulo a prime; the top bits used here leave the low bits,
    // which are uniform (a BLAKE3 digest), to spread entries inside each partition.
    private static int PartitionOf(ChunkHash hash) => (int)((uint)hash.GetHashCode() >> (32 - PartitionBits));
}
