using System.Diagnostics;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;
using StreamClone.Store.Journal;

namespace StreamClone.Store;

/// <summary>
/// The sink's content-addressed, crash-consistent chunk store.
/// </summary>
/// <remarks>
/// Layout under <see cref="Directory"/>:
/// <code>
/// snapshots/&lt;id&gt;/offer.msgpack     the SnapshotOfferMessage; written last at creation, so a directory
///                                 without it is an interrupted creation and is removed on open
/// snapshots/&lt;id&gt;/obj-&lt;n&gt;.raw       object n (ObjectInfo.Id) at full size, sparse; chunk i at i*ChunkSize
/// snapshots/&lt;id&gt;/journal.log       append-only presence records (see Journal/GroupCommitJournal, JournalRecord)
/// snapshots/&lt;id&gt;/upstream          who the snapshot came from (UTF-8; see GetInventory(string))
/// snapshots/&lt;id&gt;/manifest.msgpack  only once the snapshot is complete and its root hashes matched
/// snapshots/&lt;id&gt;/journal.log.corrupt-&lt;UTC time&gt;  a damaged journal as found, kept when replay rebuilt it
/// evicting/&lt;id&gt;.&lt;guid&gt;/           a cache eviction's files between rename and delete (emptied on open)
/// cache-bound                     the cache bound the store was last opened with (for `inspect`)
/// </code>
/// A snapshot directory's mtime is its last use, the order a bounded store (a relay's cache) evicts in
/// (ChunkStore.Cache.cs).
/// The journal is the only source of truth for presence: a record is appended only after the bytes
/// it names are fsynced, so after a crash at any instant the store holds only chunks whose bytes
/// are on disk, and a chunk written but not journaled is absent (the source re-sends it). A journal
/// damaged other than at its tail is rebuilt from the chunks that re-verify (see SnapshotAssembly.Replay.cs).
/// Files hold VM memory and disks: every file is 0600 and every directory 0700, tightened on open
/// if an older build left them looser.
/// Open loads every snapshot, so the hash index (<see cref="Contains"/>) spans all of them; what a
/// peer learns of it, or may copy by naming a hash, is scoped to its upstream
/// (<see cref="GetInventory(string)"/>, <see cref="SnapshotAssembly.TryPutKnown"/>).
/// </remarks>
public sealed partial class ChunkStore : IDisposable
{
    internal const string SnapshotsDirectoryName = "snapshots";
    internal const string LockFileName = "store.lock";

    private readonly Lock _snapshotsLock = new();
    private readonly Dictionary<string, SnapshotAssembly> _snapshotsById = new(StringComparer.Ordinal);

    // Position = the ordinal packed into hash-index locations; append-only for the store's lifetime
    // (ordinals are never reused), a slot cleared (null) when its snapshot is evicted.
    private readonly List<SnapshotAssembly?> _snapshots = [];
    private bool _disposed;

    // Held for the store's lifetime (FileShare.None = flock(LOCK_EX) on Unix): a second process
    // replaying journals would truncate the tail this one is appending to.
    private FileStream? _lockFile;

    private ChunkStore(string directory, ILogger logger, ChunkStoreOptions options, bool readOnly)
    {
        Directory = directory;
        Logger = logger;
        Options = options;
        IsReadOnly = readOnly;
    }

    public string Directory { get; }

    internal ILogger Logger { get; }

    internal ChunkStoreOptions Options { get; }

    /// <summary>
    /// Opened by <see cref="OpenReadOnly"/>: every file O_RDONLY, no lock, nothing created, truncated,
    /// removed or rewritten; snapshots cannot be created, resumed or written.
    /// </summary>
    public bool IsReadOnly { get; }

    internal string SnapshotsDirectory => Path.Combine(Directory, SnapshotsDirectoryName);

    /// <summary>Opens (creating if missing) the store at <paramref name="directory"/> and replays every snapshot's journal.</summary>
    public static ChunkStore Open(string directory, ILogger logger, ChunkStoreOptions? options = null) =>
        Open(directory, logger, options, readOnly: false);

    /// <summary>
    /// Opens an existing store to look at it (`inspect`) without changing a byte: no lock is taken, so
    /// it works beside a running sink (a journal being appended then simply shows a torn tail), and
    /// damage found on replay is reported, not repaired.
    /// </summary>
    public static ChunkStore OpenReadOnly(string directory, ILogger logger) =>
        Open(directory, logger, null, readOnly: true);

    private static ChunkStore Open(string directory, ILogger logger, ChunkStoreOptions? options, bool readOnly)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(logger);
        options ??= new ChunkStoreOptions();
        options.Validate();

        var stopwatch = Stopwatch.StartNew();
        var store = new ChunkStore(Path.GetFullPath(directory), logger, options, readOnly);
        try
        {
            store.Load();
        }
        catch
        {
            store.Dispose();
            throw;
        }
        var stats = store.GetStatistics();
        StoreLog.StoreOpened(logger, store.Directory, stats.Snapshots, stats.ChunksHeld, stats.UniqueHashes, stopwatch.ElapsedMilliseconds);
        return store;
    }

    private void Load()
    {
        if (IsReadOnly)
        {
            if (!System.IO.Directory.Exists(Directory))
            {
                throw new DirectoryNotFoundException($"Chunk store: no store at '{Directory}'.");
            }
        }
        else
        {
            OpenForWriting();
            RemoveEvictionLeftovers();
            RecordCacheBound();
        }

        string[] directories = System.IO.Directory.Exists(SnapshotsDirectory) ? System.IO.Directory.GetDirectories(SnapshotsDirectory) : [];
        Array.Sort(directories, StringComparer.Ordinal);
        var records = 0L;
        foreach (var snapshotDirectory in directories)
        {
            var journal = new FileInfo(Path.Combine(snapshotDirectory, SnapshotAssembly.JournalFileName));
            records += journal.Exists ? journal.Length / JournalRecord.Size : 0;
        }
        // The journals' record count bounds the unique hashes replay can add.
        ReserveIndex(records);
        foreach (var snapshotDirectory in directories)
        {
            if (!File.Exists(Path.Combine(snapshotDirectory, SnapshotAssembly.OfferFileName)))
            {
                if (!IsReadOnly)
                {
                    StoreLog.UnfinishedSnapshotRemoved(Logger, snapshotDirectory);
                    System.IO.Directory.Delete(snapshotDirectory, recursive: true);
                }
                continue;
            }
            if (!IsReadOnly)
            {
                // Tightens what an older build created 0755 / 0644.
                StoreIO.CreatePrivateDirectory(snapshotDirectory);
                foreach (var file in System.IO.Directory.GetFiles(snapshotDirectory))
                {
                    StoreIO.MakePrivate(file);
                }
            }
            var assembly = SnapshotAssembly.Load(this, _snapshots.Count, snapshotDirectory);
            RestoreUse(assembly);
            _snapshots.Add(assembly);
            _snapshotsById.Add(assembly.SnapshotId, assembly);
        }
    }

    private void OpenForWriting()
    {
        var created = !System.IO.Directory.Exists(SnapshotsDirectory);
        StoreIO.CreatePrivateDirectory(Directory);
        StoreIO.CreatePrivateDirectory(SnapshotsDirectory);
        var lockPath = Path.Combine(Directory, LockFileName);
        try
        {
            var lockOptions = new FileStreamOptions { Mode = FileMode.OpenOrCreate, Access = FileAccess.ReadWrite, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                lockOptions.UnixCreateMode = VmStateModes.File;
            }
            _lockFile = new FileStream(lockPath, lockOptions);
        }
        catch (IOException ex)
        {
            throw new ChunkStoreIOException($"Chunk store {Directory} is in use by another process (cannot lock '{lockPath}').", lockPath, false, ex);
        }
        StoreIO.MakePrivate(lockPath);
        if (created)
        {
            // Make the new directories themselves durable before anything is written under them.
            StoreIO.SyncDirectory(Directory);
            StoreIO.SyncDirectory(Path.GetDirectoryName(Directory) ?? Directory);
        }
    }

    /// <summary>
    /// Starts a snapshot, or resumes the stored one with the same id. A resumed offer must describe the
    /// same objects (ids, names, kinds, sizes, chunk sizes), otherwise its chunks would land in the wrong
    /// places: <see cref="InvalidDataException"/>.
    /// </summary>
    /// <param name="offer">The offer as received.</param>
    /// <param name="upstream">Who it comes from, as the user named it (<see cref="UpstreamName"/>); recorded with the snapshot.</param>
    /// <remarks>
    /// The snapshot stays referenced for the store's lifetime (it is never evicted): the sink's way. A relay
    /// uses <see cref="OpenSnapshotLease"/> and disposes the lease when its session ends.
    /// </remarks>
    public SnapshotAssembly OpenSnapshot(SnapshotOfferMessage offer, string upstream = "") =>
        OpenSnapshotLease(offer, upstream).Snapshot;

    /// <summary>
    /// The node's policy for a new snapshot (CheckSizeLimit, then CheckFreeSpace): at most <see cref="ChunkStoreOptions.MaxSnapshotBytes"/>,
    /// and its full size plus <see cref="ChunkStoreOptions.FreeSpaceMarginBytes"/> must be free on the
    /// store's filesystem now (objects are sparse, so this is the worst case: every chunk non-zero).
    /// </summary>
    private void CheckSizeLimit(string snapshotId, long totalBytes)
    {
        if (totalBytes > Options.MaxSnapshotBytes)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OfferRefused,
                $"snapshot {snapshotId} of {totalBytes} bytes exceeds this store's limit of {Options.MaxSnapshotBytes} bytes (--max-snapshot-bytes)");
        }
    }

    /// <summary>Checked after a cache made room: what it evicted is free space now.</summary>
    private void CheckFreeSpace(string snapshotId, long totalBytes)
    {
        var free = (Options.FreeSpaceProbe ?? FreeSpace.Available)(SnapshotsDirectory);
        if (totalBytes > free - Options.FreeSpaceMarginBytes)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OfferRefused,
                $"snapshot {snapshotId} of {totalBytes} bytes does not fit the store: {free} bytes free, {Options.FreeSpaceMarginBytes} of them kept in reserve");
        }
    }

    /// <summary>A stored snapshot by id without an offer (NBD export, postcopy, inspect); null if unknown.</summary>
    public SnapshotAssembly? GetSnapshot(string snapshotId)
    {
        lock (_snapshotsLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _snapshotsById.GetValueOrDefault(snapshotId);
        }
    }

    /// <summary>Flushes every snapshot: the clean-shutdown step before <see cref="Dispose"/>.</summary>
    public async ValueTask FlushAllAsync(CancellationToken ct = default)
    {
        var snapshots = LiveSnapshots();
        foreach (var snapshot in snapshots)
        {
            await snapshot.FlushAsync(ct);
        }
    }

    /// <summary>Every stored snapshot with per-object presence, ordered by id.</summary>
    public IReadOnlyList<StoredSnapshotInfo> ListSnapshots()
    {
        var snapshots = LiveSnapshots();
        return [.. snapshots.OrderBy(s => s.SnapshotId, StringComparer.Ordinal).Select(s => s.Describe())];
    }

    public StoreStatistics GetStatistics()
    {
        var snapshots = LiveSnapshots();
        long held = 0, zero = 0, bytes = 0;
        var complete = 0;
        foreach (var snapshot in snapshots)
        {
            held += snapshot.PresentChunks;
            zero += snapshot.ZeroChunks;
            bytes += snapshot.BytesOnDisk;
            complete += snapshot.IsComplete ? 1 : 0;
        }
        return new StoreStatistics(held, zero, IndexCount, bytes, snapshots.Length, complete)
        {
            MaxCacheBytes = IsReadOnly ? RecordedCacheBound() : Options.MaxCacheBytes,
            CacheBytes = CacheBytes,
        };
    }

    /// <summary>
    /// Re-hashes every durable chunk (journaled data chunks against their hash; zero chunks must read
    /// as zeros). Replay trusts the journal; this is the check for media damage (`inspect --verify`).
    /// Chunks put but not yet flushed are not covered.
    /// </summary>
    public Task<StoreVerifyReport> VerifyAsync(CancellationToken ct = default)
    {
        var snapshots = LiveSnapshots();
        return Task.Run(() =>
        {
            long checkedChunks = 0;
            var faults = new List<ChunkFault>();
            foreach (var snapshot in snapshots)
            {
                checkedChunks += snapshot.Verify(faults, ct);
            }
            StoreLog.VerifyFinished(Logger, Directory, checkedChunks, faults.Count);
            return new StoreVerifyReport(checkedChunks, faults);
        }, ct);
    }

    private SnapshotAssembly[] LiveSnapshots()
    {
        lock (_snapshotsLock)
        {
            return [.. _snapshots.OfType<SnapshotAssembly>()];
        }
    }

    /// <summary>
    /// Closes every file. Does not flush: this is also the abandon path, and chunks not yet flushed
    /// are simply re-sent. Call <see cref="SnapshotAssembly.FlushAsync"/> first for a clean stop.
    /// </summary>
    public void Dispose()
    {
        SnapshotAssembly[] snapshots;
        lock (_snapshotsLock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            snapshots = [.. _snapshots.OfType<SnapshotAssembly>()];
        }
        foreach (var snapshot in snapshots)
        {
            snapshot.Close();
        }
        _lockFile?.Dispose();
    }
}
