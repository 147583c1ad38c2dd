using StreamClone.Shared.Model;

namespace StreamClone.Store;

/// <summary>A snapshot as the store holds it, for `inspect`.</summary>
public sealed record StoredSnapshotInfo(
    string SnapshotId,
    DateTime CreatedUtc,
    string Origin,
    bool IsComplete,
    IReadOnlyList<StoredObjectInfo> Objects)
{
    public long TotalChunks => Objects.Sum(o => o.TotalChunks);

    public long PresentChunks => Objects.Sum(o => o.PresentChunks);

    /// <summary>Damage replay found in the journal and what was done (see <see cref="SnapshotAssembly.JournalDamage"/>); null when sound.</summary>
    public string? JournalDamage { get; init; }
}

public sealed record StoredObjectInfo(
    int Id,
    string Name,
    ObjectKind Kind,
    long Size,
    int ChunkSize,
    long PresentChunks,
    long TotalChunks,
    long ZeroChunks);

/// <summary>Store-wide totals.</summary>
/// <param name="ChunksHeld">Present places over all snapshots (zero chunks included).</param>
/// <param name="ZeroChunks">Present places that are zero chunks (holes, no data on disk).</param>
/// <param name="UniqueHashes">Distinct non-zero hashes held: the inventory size.</param>
/// <param name="BytesOnDisk">Data bytes written into object files plus journals and metadata; holes are not counted.</param>
/// <param name="Snapshots">Snapshots known to the store, complete or not.</param>
/// <param name="CompleteSnapshots">Snapshots with a manifest.</param>
public sealed record StoreStatistics(
    long ChunksHeld,
    long ZeroChunks,
    int UniqueHashes,
    long BytesOnDisk,
    int Snapshots,
    int CompleteSnapshots)
{
    /// <summary>
    /// The cache bound the store was last opened with for writing (<see cref="ChunkStoreOptions.MaxCacheBytes"/>,
    /// recorded in the store so `inspect` can show it); null for an unbounded store (a sink's).
    /// </summary>
    public long? MaxCacheBytes { get; init; }

    /// <summary>What counts against the bound now (<see cref="ChunkStore.CacheBytes"/>).</summary>
    public long CacheBytes { get; init; }
}

/// <summary>A present chunk whose bytes no longer hash to its journaled hash.</summary>
public sealed record ChunkFault(string SnapshotId, int ObjectId, long Index, ChunkHash Expected);

/// <summary>Result of re-hashing every durable chunk.</summary>
public sealed record StoreVerifyReport(long ChunksChecked, IReadOnlyList<ChunkFault> Faults)
{
    public bool IsClean => Faults.Count == 0;
}
