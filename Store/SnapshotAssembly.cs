using System.Diagnostics.CodeAnalysis;
using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;
using StreamClone.Store.Journal;

namespace StreamClone.Store;

/// <summary>
/// One snapshot being assembled (or already complete) in the store: places chunks into the objects'
/// raw files, records their presence in the journal, and reads assembled bytes back.
/// Put*, IsPresent and Read are thread-safe; FlushAsync and CompleteAsync serialize among themselves.
/// </summary>
[SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable",
    Justification = "Owned by ChunkStore, which closes it on Dispose; callers must not end its life on their own.")]
public sealed partial class SnapshotAssembly
{
    internal const string OfferFileName = "offer.msgpack";
    internal const string JournalFileName = "journal.log";
    internal const string ManifestFileName = "manifest.msgpack";
    internal const string UpstreamFileName = "upstream";

    private readonly ChunkStore _store;
    private readonly SnapshotOfferMessage _offer;
    private readonly StoredObject[] _objects;
    private readonly Dictionary<int, StoredObject> _objectsById;
    private volatile bool _isComplete;
    private volatile bool _closed;

    // CompleteAsync runs one at a time, and Close waits for it (it reads the journal and writes the manifest).
    private readonly SemaphoreSlim _completeGate = new(1, 1);

    // Loaded from disk rather than created: absent places may hold bytes of un-journaled writes.
    private bool _mayHoldUnjournaledBytes;

    private SnapshotAssembly(ChunkStore store, int ordinal, string directory, SnapshotOfferMessage offer, string upstream,
        StoredObject[] objects, bool createJournal)
    {
        _store = store;
        Upstream = upstream;
        Ordinal = ordinal;
        DirectoryPath = directory;
        _offer = offer;
        _objects = objects;
        _objectsById = objects.ToDictionary(o => o.Info.Id);
        TotalChunks = objects.Sum(o => o.ChunkCount);
        var journalPath = Path.Combine(directory, JournalFileName);
        _journal = createJournal
            ? GroupCommitJournal.Create(journalPath, JournalOptions())
            : GroupCommitJournal.Open(journalPath, store.IsReadOnly, JournalOptions());
    }

    public string SnapshotId => _offer.SnapshotId;

    public IReadOnlyList<ObjectInfo> Objects => _offer.Objects;

    public DateTime CreatedUtc => _offer.CreatedUtc;

    public string Origin => _offer.Origin;

    /// <summary>
    /// Who this snapshot was received from, as the user named it (see <see cref="ChunkStore.UpstreamName"/>);
    /// empty when unknown (created by a library caller, or by a build before this was recorded).
    /// Decides which peers may learn its chunk hashes: see <see cref="ChunkStore.GetInventory(string)"/>.
    /// </summary>
    public string Upstream { get; }

    /// <summary>
    /// True once the manifest is written (root hashes matched) and every chunk is present: a manifest
    /// beside a journal that lost records (damage, recovery) does not make a snapshot complete.
    /// </summary>
    public bool IsComplete => _isComplete && PresentChunks == TotalChunks;

    /// <summary>Why replay found this snapshot's journal damaged, and what was done about it; null when it was sound.</summary>
    public string? JournalDamage { get; private set; }

    public long TotalChunks { get; }

    public long PresentChunks => _objects.Sum(o => o.PresentChunks);

    internal long ZeroChunks => _objects.Sum(o => o.ZeroChunks);

    internal long BytesOnDisk => _objects.Sum(o => o.DataBytes) + _journal.DurableLength;

    /// <summary>Position in the store's snapshot list: the snapshot part of a <see cref="ChunkLocation"/>.</summary>
    internal int Ordinal { get; }

    internal string DirectoryPath { get; }

    /// <summary>True when chunk <paramref name="index"/> of the object is readable now (not necessarily durable yet).</summary>
    public bool IsPresent(int objectId, long index)
    {
        var obj = GetObject(objectId);
        return (ulong)index < (ulong)obj.ChunkCount && obj.Presence.IsPresent(index);
    }

    /// <summary>True when every chunk covering [offset, offset+length) is present.</summary>
    public bool IsRangePresent(int objectId, long offset, long length)
    {
        var obj = GetObject(objectId);
        if (offset < 0 || length < 0 || offset + length > obj.Info.Size)
        {
            return false;
        }
        return length == 0 || obj.Presence.AllPresent(offset / obj.Info.ChunkSize, (offset + length - 1) / obj.Info.ChunkSize);
    }

    /// <summary>
    /// Reads assembled bytes at <paramref name="offset"/>; returns the count read (short only at the
    /// object's end). Every chunk covered must be present: <see cref="InvalidOperationException"/> otherwise.
    /// </summary>
    public int Read(int objectId, long offset, Span<byte> destination)
    {
        ThrowIfClosed();
        var obj = GetObject(objectId);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset, obj.Info.Size);
        var count = (int)Math.Min(destination.Length, obj.Info.Size - offset);
        if (count == 0)
        {
            return 0;
        }
        var first = offset / obj.Info.ChunkSize;
        var last = (offset + count - 1) / obj.Info.ChunkSize;
        if (!obj.Presence.AllPresent(first, last))
        {
            ThrowNotPresent(obj, first, last);
        }
        return StoreIO.ReadFully(obj.Handle, obj.Path, destination[..count], offset);
    }

    /// <summary>The assembled raw file of an object (a clone's base image once the snapshot is complete).</summary>
    public string GetObjectPath(int objectId) => GetObject(objectId).Path;

    internal StoredObject GetObject(int objectId)
    {
        if (!_objectsById.TryGetValue(objectId, out var obj))
        {
            return ThrowHelper.ThrowProtocol<StoredObject>(ProtocolError.BadChunkPlacement,
                $"snapshot {SnapshotId} has no object {objectId}");
        }
        return obj;
    }

    internal StoredObject GetObjectAt(int position) => _objects[position];

    internal StoredSnapshotInfo Describe() => new(
        SnapshotId, CreatedUtc, Origin, IsComplete,
        [.. _objects.Select(o => new StoredObjectInfo(o.Info.Id, o.Info.Name, o.Info.Kind, o.Info.Size, o.Info.ChunkSize,
            o.PresentChunks, o.ChunkCount, o.ZeroChunks))])
    {
        JournalDamage = JournalDamage,
    };

    internal void EnsureSameObjects(SnapshotOfferMessage offer)
    {
        var mine = _offer.Objects;
        if (offer.Objects.Count != mine.Count)
        {
            throw new InvalidDataException($"Snapshot {SnapshotId} is stored with {mine.Count} objects; the offer has {offer.Objects.Count}.");
        }
        for (var i = 0; i < mine.Count; i++)
        {
            var (a, b) = (mine[i], offer.Objects[i]);
            if (a.Id != b.Id || a.Name != b.Name || a.Kind != b.Kind || a.Size != b.Size || a.ChunkSize != b.ChunkSize)
            {
                throw new InvalidDataException(
                    $"Snapshot {SnapshotId} object #{i} is stored as (id {a.Id}, '{a.Name}', {a.Kind}, {a.Size} bytes, chunk {a.ChunkSize}) " +
                    $"but offered as (id {b.Id}, '{b.Name}', {b.Kind}, {b.Size} bytes, chunk {b.ChunkSize}).");
            }
        }
    }

    /// <summary>
    /// Creates the snapshot directory. Ordering: object files, an empty journal and the upstream first, the offer
    /// last (atomically), then the parent directory is synced. A crash before the offer is durable
    /// leaves a directory without one, which <see cref="ChunkStore"/> removes on open.
    /// </summary>
    internal static SnapshotAssembly Create(ChunkStore store, int ordinal, SnapshotOfferMessage offer, string upstream)
    {
        var directory = Path.Combine(store.SnapshotsDirectory, offer.SnapshotId);
        StoreIO.CreatePrivateDirectory(directory);
        var objects = new List<StoredObject>();
        SnapshotAssembly? assembly = null;
        try
        {
            for (var i = 0; i < offer.Objects.Count; i++)
            {
                objects.Add(OpenObject(directory, offer.Objects[i], i, FileMode.Create));
            }
            var offerBytes = MessagePackSerializer.Serialize(offer, MessagePackDefaults.Options);
            // Keep a private copy: the caller's message object may be reused or changed later.
            var privateOffer = MessagePackSerializer.Deserialize<SnapshotOfferMessage>(offerBytes, MessagePackDefaults.Options);
            // Creates the empty journal (header synced) before the upstream and the offer.
            assembly = new SnapshotAssembly(store, ordinal, directory, privateOffer, upstream, [.. objects], createJournal: true);

            StoreIO.WriteAtomically(Path.Combine(directory, UpstreamFileName), System.Text.Encoding.UTF8.GetBytes(upstream));
            StoreIO.WriteAtomically(Path.Combine(directory, OfferFileName), offerBytes);
            StoreIO.SyncDirectory(store.SnapshotsDirectory);
            return assembly;
        }
        catch
        {
            Abandon(assembly, objects);
            // Only an accepted snapshot stays: no directory, sparse file or empty journal of a failed creation.
            TryDeleteDirectory(directory);
            throw;
        }
    }

    /// <summary>A creation or load that failed: the assembly closes what it owns, or the object files opened before it existed are closed here.</summary>
    private static void Abandon(SnapshotAssembly? assembly, List<StoredObject> objects)
    {
        if (assembly is not null)
        {
            assembly.Close();
        }
        else
        {
            objects.ForEach(o => o.Dispose());
        }
    }

    private static void TryDeleteDirectory(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Without an offer file it is removed on the next open (see ChunkStore.Load).
        }
    }

    /// <summary>Opens a stored snapshot and replays its journal.</summary>
    internal static SnapshotAssembly Load(ChunkStore store, int ordinal, string directory)
    {
        var offerPath = Path.Combine(directory, OfferFileName);
        SnapshotOfferMessage offer;
        try
        {
            offer = MessagePackSerializer.Deserialize<SnapshotOfferMessage>(File.ReadAllBytes(offerPath), MessagePackDefaults.Options);
        }
        catch (MessagePackSerializationException ex)
        {
            throw new InvalidDataException($"Chunk store: '{offerPath}' is not a readable snapshot offer.", ex);
        }
        try
        {
            OfferRules.Validate(offer);
        }
        catch (ProtocolViolationException ex)
        {
            throw new InvalidDataException($"Chunk store: '{offerPath}' is not a valid snapshot offer: {ex.Message}", ex);
        }
        if (Path.GetFileName(directory) != offer.SnapshotId)
        {
            throw new InvalidDataException($"Chunk store: '{offerPath}' names snapshot '{offer.SnapshotId}' but lives in '{directory}'.");
        }

        var objects = new List<StoredObject>();
        SnapshotAssembly? assembly = null;
        try
        {
            for (var i = 0; i < offer.Objects.Count; i++)
            {
                objects.Add(store.IsReadOnly
                    ? OpenObjectReadOnly(directory, offer.Objects[i], i)
                    : OpenObject(directory, offer.Objects[i], i, FileMode.OpenOrCreate));
            }
            var upstreamPath = Path.Combine(directory, UpstreamFileName);
            // Missing in stores written before upstreams were recorded: unknown, so shared with no named upstream.
            var upstream = File.Exists(upstreamPath) ? File.ReadAllText(upstreamPath) : "";
            assembly = new SnapshotAssembly(store, ordinal, directory, offer, upstream, [.. objects], createJournal: false);
            var records = assembly.Replay();
            assembly._mayHoldUnjournaledBytes = true;
            assembly._isComplete = assembly.HasCompleteManifest();
            StoreLog.SnapshotReplayed(store.Logger, assembly.SnapshotId, records, assembly.PresentChunks,
                assembly.TotalChunks, assembly.IsComplete);
            return assembly;
        }
        catch
        {
            Abandon(assembly, objects);
            throw;
        }
    }

    private static StoredObject OpenObjectReadOnly(string directory, ObjectInfo info, int position)
    {
        var path = Path.Combine(directory, StoredObject.FileName(info.Id));
        return new StoredObject(info, position, path, StoreIO.OpenReadOnly(path));
    }

    private static StoredObject OpenObject(string directory, ObjectInfo info, int position, FileMode mode)
    {
        var path = Path.Combine(directory, StoredObject.FileName(info.Id));
        var handle = StoreIO.OpenReadWrite(path, mode);
        try
        {
            // Full size up front as a sparse file: holes read as zeros, so zero chunks cost no IO and
            // no space. Re-applied on load because a crash may lose the size change (it was never
            // fsynced: nothing depends on it until a chunk's own write, which extends the file anyway).
            if (RandomAccess.GetLength(handle) != info.Size)
            {
                RandomAccess.SetLength(handle, info.Size);
            }
        }
        catch (IOException ex)
        {
            handle.Dispose();
            throw StoreIO.Wrap(ex, path, "sizing");
        }
        catch
        {
            handle.Dispose();
            throw;
        }
        return new StoredObject(info, position, path, handle);
    }

    internal void ThrowIfClosed() => ObjectDisposedException.ThrowIf(_closed, this);

    private void ThrowIfReadOnly()
    {
        if (_store.IsReadOnly)
        {
            throw new InvalidOperationException($"Snapshot {SnapshotId} belongs to a store opened read-only.");
        }
    }

    [DoesNotReturn]
    private void ThrowNotPresent(StoredObject obj, long first, long last)
    {
        var missing = first;
        while (missing <= last && obj.Presence.IsPresent(missing))
        {
            missing++;
        }
        throw new InvalidOperationException(
            $"Snapshot {SnapshotId} object {obj.Info.Id}: chunk {missing} (of {first}..{last}) is not present yet.");
    }

    /// <summary>Closes files after any running flush or completion; pending (unflushed) records are dropped.</summary>
    internal void Close()
    {
        // A running CompleteAsync reads the journal and writes the manifest: let it finish first.
        _completeGate.Wait();
        _closed = true;
        _completeGate.Release();
        _journal.Dispose();
        foreach (var obj in _objects)
        {
            obj.Dispose();
        }
    }
}
