using StreamClone.Shared;
using StreamClone.Shared.Protocol;

namespace StreamClone.Store;

/// <summary>
/// The store as a relay's cache: a bound (<see cref="ChunkStoreOptions.MaxCacheBytes"/>), eviction of whole
/// snapshots least recently used first, and references that make eviction safe beside readers.
/// </summary>
/// <remarks>
/// The rule that keeps readers safe: a snapshot is evicted only under <c>_snapshotsLock</c>, only when it
/// holds no reference, and in that same critical section its slot is cleared and every index entry
/// pointing into it removed. A reader (a Known copy, a serving read) takes its reference under the same
/// lock and fails if the slot is gone. So a location from the index either names a live snapshot the
/// reader now holds, or is refused; bytes are never read from an evicted snapshot's files (and they are
/// re-hashed anyway). Eviction needs no journal work: each snapshot's journal lives and dies with its
/// directory, which is renamed out of <c>snapshots/</c> (atomic: a crash leaves it whole or gone, and
/// <c>evicting/</c> is emptied on open) before it is deleted.
/// LRU order is in memory (a store-wide clock) and persisted cheaply as each snapshot directory's mtime,
/// set when a lease is taken or returned; internal Known copies refresh only the in-memory order.
/// </remarks>
public sealed partial class ChunkStore
{
    internal const string EvictingDirectoryName = "evicting";
    internal const string CacheBoundFileName = "cache-bound";

    private long _clock;

    /// <summary>Raised with the snapshot id after an eviction (on the evicting thread, no lock held): drop state kept for it.</summary>
    public event Action<string>? SnapshotEvicted;

    /// <summary>The cache bound this store enforces; null when unbounded.</summary>
    public long? MaxCacheBytes => Options.MaxCacheBytes;

    /// <summary>
    /// What counts against <see cref="MaxCacheBytes"/>: per snapshot, the data bytes of its present chunks
    /// plus its journal, or its full size while a writing lease fills it (counters, no IO).
    /// </summary>
    public long CacheBytes
    {
        get
        {
            lock (_snapshotsLock)
            {
                return ChargedBytesLocked(except: null);
            }
        }
    }

    internal string EvictingDirectory => Path.Combine(Directory, EvictingDirectoryName);

    /// <summary>
    /// <see cref="OpenSnapshot"/> with a writing lease: the snapshot is neither evicted nor (while incomplete)
    /// charged less than its full size until the lease is disposed. With a cache bound, room for the
    /// snapshot is made first by evicting unreferenced snapshots least recently used first; if that cannot
    /// be done, <see cref="ProtocolError.OfferRefused"/> and nothing is evicted.
    /// </summary>
    public SnapshotLease OpenSnapshotLease(SnapshotOfferMessage offer, string upstream = "")
    {
        ArgumentNullException.ThrowIfNull(offer);
        ArgumentNullException.ThrowIfNull(upstream);
        if (IsReadOnly)
        {
            throw new InvalidOperationException($"Chunk store {Directory} is open read-only: snapshot {offer.SnapshotId} cannot be created or resumed.");
        }
        var totalBytes = OfferRules.Validate(offer);
        List<string> evicted = [];
        try
        {
            lock (_snapshotsLock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_snapshotsById.TryGetValue(offer.SnapshotId, out var existing) && !IsSameSnapshot(existing, offer, evicted))
                {
                    existing = null;
                }
                if (existing is not null)
                {
                    MakeRoomLocked(existing.SnapshotId, existing.TotalBytes, existing, evicted);
                    ReserveIndex(existing.TotalChunks - existing.PresentChunks);
                    StoreLog.SnapshotResumed(Logger, existing.SnapshotId, existing.PresentChunks, existing.TotalChunks);
                    return LeaseLocked(existing, writing: true);
                }
                if (_snapshots.Count > ChunkLocation.MaxSnapshots)
                {
                    throw new InvalidOperationException($"The store holds the maximum of {ChunkLocation.MaxSnapshots} snapshots.");
                }
                // Before anything is written: a refused offer leaves nothing in the store.
                CheckSizeLimit(offer.SnapshotId, totalBytes);
                MakeRoomLocked(offer.SnapshotId, totalBytes, null, evicted);
                CheckFreeSpace(offer.SnapshotId, totalBytes);
                var assembly = SnapshotAssembly.Create(this, _snapshots.Count, offer, upstream);
                ReserveIndex(assembly.TotalChunks);
                _snapshots.Add(assembly);
                _snapshotsById.Add(assembly.SnapshotId, assembly);
                StoreLog.SnapshotCreated(Logger, assembly.SnapshotId, assembly.Objects.Count, assembly.TotalChunks);
                return LeaseLocked(assembly, writing: true);
            }
        }
        finally
        {
            RaiseEvicted(evicted);
        }
    }

    /// <summary>A reading lease on a stored snapshot (serving children, restore): null if unknown or evicted.</summary>
    public SnapshotLease? AcquireSnapshot(string snapshotId)
    {
        ArgumentNullException.ThrowIfNull(snapshotId);
        lock (_snapshotsLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _snapshotsById.TryGetValue(snapshotId, out var snapshot) ? LeaseLocked(snapshot, writing: false) : null;
        }
    }

    /// <summary>
    /// Evicts one snapshot now if nobody holds it (operator action, tests): false when it is unknown or
    /// referenced. Same effects as an eviction for room.
    /// </summary>
    public bool TryEvict(string snapshotId, string reason)
    {
        ArgumentNullException.ThrowIfNull(snapshotId);
        ArgumentNullException.ThrowIfNull(reason);
        if (IsReadOnly)
        {
            throw new InvalidOperationException($"Chunk store {Directory} is open read-only: nothing can be evicted.");
        }
        List<string> evicted = [];
        try
        {
            lock (_snapshotsLock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (!_snapshotsById.TryGetValue(snapshotId, out var snapshot) || snapshot.References > 0)
                {
                    return false;
                }
                EvictLocked(snapshot, reason, evicted);
                return true;
            }
        }
        finally
        {
            RaiseEvicted(evicted);
        }
    }

    /// <summary>
    /// A reference for an internal read of a snapshot named by an index location: null when that
    /// snapshot was evicted (its index entries are gone with it; the caller treats the hash as not held).
    /// Pair with <see cref="Release"/> (persistUse: false).
    /// </summary>
    internal SnapshotAssembly? TryReference(int ordinal)
    {
        lock (_snapshotsLock)
        {
            if (_disposed || (uint)ordinal >= (uint)_snapshots.Count || _snapshots[ordinal] is not { } snapshot)
            {
                return null;
            }
            snapshot.References++;
            snapshot.LastUsedTicks = TickLocked();
            return snapshot;
        }
    }

    internal void Release(SnapshotAssembly snapshot, bool writing, bool persistUse)
    {
        lock (_snapshotsLock)
        {
            snapshot.References--;
            if (writing)
            {
                snapshot.Writers--;
            }
            snapshot.LastUsedTicks = TickLocked();
            if (persistUse)
            {
                PersistUseLocked(snapshot);
            }
        }
    }

    private SnapshotLease LeaseLocked(SnapshotAssembly snapshot, bool writing)
    {
        snapshot.References++;
        if (writing)
        {
            snapshot.Writers++;
        }
        snapshot.LastUsedTicks = TickLocked();
        PersistUseLocked(snapshot);
        return new SnapshotLease(this, snapshot, writing);
    }

    /// <summary>
    /// The stored copy under this id is the offered snapshot when it has the same objects (ids, names,
    /// kinds, sizes, chunk sizes). A cache replaces a different one nobody holds (logged); a sink's store,
    /// or a copy in use, refuses the offer with <see cref="InvalidDataException"/> as before.
    /// </summary>
    private bool IsSameSnapshot(SnapshotAssembly existing, SnapshotOfferMessage offer, List<string> evicted)
    {
        try
        {
            existing.EnsureSameObjects(offer);
            return true;
        }
        catch (InvalidDataException ex) when (Options.MaxCacheBytes is not null && existing.References == 0)
        {
            StoreLog.SnapshotReplaced(Logger, existing.SnapshotId, ex.Message);
            EvictLocked(existing, "replaced by a different offer under the same id", evicted);
            return false;
        }
    }

    /// <summary>
    /// Makes room for <paramref name="needed"/> bytes under the bound, or refuses. Everything else is
    /// charged (<see cref="SnapshotAssembly.ChargedBytes"/>); candidates are the unreferenced ones, oldest
    /// use first. Nothing is evicted unless evicting enough is possible.
    /// </summary>
    private void MakeRoomLocked(string snapshotId, long needed, SnapshotAssembly? self, List<string> evicted)
    {
        if (Options.MaxCacheBytes is not { } max)
        {
            return;
        }
        if (needed > max)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OfferRefused,
                $"snapshot {snapshotId} of {needed} bytes exceeds this relay's cache of {max} bytes");
        }
        var used = ChargedBytesLocked(self);
        if (used <= max - needed)
        {
            return;
        }
        var candidates = _snapshots.OfType<SnapshotAssembly>()
            .Where(s => s != self && s.References == 0)
            .OrderBy(s => s.LastUsedTicks).ThenBy(s => s.Ordinal)
            .ToList();
        var freeable = candidates.Sum(s => s.ChargedBytes);
        if (used - freeable > max - needed)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OfferRefused,
                $"snapshot {snapshotId} of {needed} bytes does not fit this relay's cache of {max} bytes: " +
                $"{used - freeable} bytes are held by snapshots in use and cannot be evicted");
        }
        foreach (var candidate in candidates)
        {
            if (used <= max - needed)
            {
                break;
            }
            used -= candidate.ChargedBytes;
            EvictLocked(candidate, $"room for snapshot {snapshotId}", evicted);
        }
    }

    private long ChargedBytesLocked(SnapshotAssembly? except)
    {
        long sum = 0;
        foreach (var snapshot in _snapshots)
        {
            if (snapshot is not null && snapshot != except)
            {
                sum += snapshot.ChargedBytes;
            }
        }
        return sum;
    }

    /// <summary>
    /// Removes an unreferenced snapshot: slot, id and index entries in one critical section (see the
    /// remarks), then its files. Hashes whose indexed copy was in it are indexed again from the durable
    /// journals of the snapshots that remain, so a hash still held elsewhere stays in the inventory.
    /// </summary>
    private void EvictLocked(SnapshotAssembly snapshot, string reason, List<string> evicted)
    {
        var freed = snapshot.BytesOnDisk;
        _snapshots[snapshot.Ordinal] = null;
        _snapshotsById.Remove(snapshot.SnapshotId);
        snapshot.IsEvicted = true;
        var removed = IndexRemoveSnapshot(snapshot.Ordinal);
        snapshot.Close();

        var trash = Path.Combine(EvictingDirectory, $"{snapshot.SnapshotId}.{Guid.NewGuid():N}");
        try
        {
            StoreIO.CreatePrivateDirectory(EvictingDirectory);
            System.IO.Directory.Move(snapshot.DirectoryPath, trash);
            StoreIO.SyncDirectory(SnapshotsDirectory);
            System.IO.Directory.Delete(trash, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Already out of the index and closed: at worst its files stay until the next open.
            StoreLog.EvictedFilesLeft(Logger, snapshot.DirectoryPath, ex.Message);
        }

        if (removed.Count > 0)
        {
            foreach (var other in _snapshots)
            {
                other?.IndexAgain(removed);
            }
        }
        StoreLog.SnapshotEvicted(Logger, snapshot.SnapshotId, reason, freed, removed.Count,
            ChargedBytesLocked(null), Options.MaxCacheBytes ?? -1);
        evicted.Add(snapshot.SnapshotId);
    }

    private void RaiseEvicted(List<string> evicted)
    {
        foreach (var id in evicted)
        {
            SnapshotEvicted?.Invoke(id);
        }
    }

    /// <summary>Strictly increasing UTC ticks: LRU order needs no ties, even within one clock tick.</summary>
    private long TickLocked()
    {
        _clock = Math.Max(_clock + 1, DateTime.UtcNow.Ticks);
        return _clock;
    }

    /// <summary>The directory's mtime carries the order across restarts (read back in <see cref="Load"/>).</summary>
    private void PersistUseLocked(SnapshotAssembly snapshot)
    {
        if (IsReadOnly || snapshot.IsEvicted)
        {
            return;
        }
        try
        {
            System.IO.Directory.SetLastWriteTimeUtc(snapshot.DirectoryPath, new DateTime(snapshot.LastUsedTicks, DateTimeKind.Utc));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Only the order after a restart suffers; the in-memory order is intact.
        }
    }

    /// <summary>Load's part: the persisted use time, and the store clock past every one of them.</summary>
    private void RestoreUse(SnapshotAssembly snapshot)
    {
        snapshot.LastUsedTicks = System.IO.Directory.GetLastWriteTimeUtc(snapshot.DirectoryPath).Ticks;
        _clock = Math.Max(_clock, snapshot.LastUsedTicks);
    }

    /// <summary>Left by an eviction a crash interrupted: already out of snapshots/, so only files to delete.</summary>
    private void RemoveEvictionLeftovers()
    {
        if (System.IO.Directory.Exists(EvictingDirectory))
        {
            System.IO.Directory.Delete(EvictingDirectory, recursive: true);
        }
    }

    /// <summary>Writes the bound (decimal bytes) for `inspect`, or removes it when the store is unbounded now.</summary>
    private void RecordCacheBound()
    {
        var path = Path.Combine(Directory, CacheBoundFileName);
        if (Options.MaxCacheBytes is { } max)
        {
            StoreIO.WriteAtomically(path, System.Text.Encoding.ASCII.GetBytes(max.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
        else if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    /// <summary>The bound a writer recorded; null when none is recorded or the file is not a positive number.</summary>
    private long? RecordedCacheBound()
    {
        var path = Path.Combine(Directory, CacheBoundFileName);
        try
        {
            return File.Exists(path)
                && long.TryParse(File.ReadAllText(path), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var max)
                && max > 0 ? max : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
