// TEMPORARY: minimal stand-in for the real store (being written on branch `store`); removed at merge.
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Sink.Store;

public sealed class ChunkStoreOptions
{
}

public sealed class ChunkStore : IDisposable
{
    private readonly ConcurrentDictionary<ChunkHash, (SnapshotAssembly, int, long)> _index = new();
    private readonly Dictionary<string, SnapshotAssembly> _snapshots = [];

    private ChunkStore(string directory) => Directory = directory;

    public string Directory { get; }

    public static ChunkStore Open(string directory, ILogger logger, ChunkStoreOptions? options = null)
    {
        System.IO.Directory.CreateDirectory(directory);
        return new ChunkStore(directory);
    }

    public bool Contains(ChunkHash hash) => _index.ContainsKey(hash);

    public IReadOnlyList<ChunkHash> GetInventory() => [.. _index.Keys];

    public SnapshotAssembly OpenSnapshot(SnapshotOfferMessage offer)
    {
        lock (_snapshots)
        {
            if (!_snapshots.TryGetValue(offer.SnapshotId, out var a))
            {
                _snapshots[offer.SnapshotId] = a = new SnapshotAssembly(this, offer);
            }
            return a;
        }
    }

    internal void Index(ChunkHash hash, SnapshotAssembly a, int o, long i) => _index.TryAdd(hash, (a, o, i));

    internal bool TryLocate(ChunkHash hash, out (SnapshotAssembly, int, long) at) => _index.TryGetValue(hash, out at);

    public void Dispose()
    {
        foreach (var s in _snapshots.Values)
        {
            s.Close();
        }
    }
}

public sealed class SnapshotAssembly
{
    private readonly ChunkStore _store;
    private readonly SnapshotOfferMessage _offer;
    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle[] _files;
    private readonly ChunkHash[][] _hashes;
    private readonly bool[][] _present;
    private long _presentCount;

    internal SnapshotAssembly(ChunkStore store, SnapshotOfferMessage offer)
    {
        _store = store;
        _offer = offer;
        var dir = Path.Combine(store.Directory, "snapshots", offer.SnapshotId);
        System.IO.Directory.CreateDirectory(dir);
        _files = [.. offer.Objects.Select(o => File.OpenHandle(Path.Combine(dir, $"obj-{o.Id}.raw"), FileMode.Create, FileAccess.ReadWrite, FileShare.Read))];
        for (var i = 0; i < _files.Length; i++)
        {
            RandomAccess.SetLength(_files[i], offer.Objects[i].Size);
        }
        _hashes = [.. offer.Objects.Select(o => new ChunkHash[ChunkMath.ChunkCount(o.Size, o.ChunkSize)])];
        _present = [.. offer.Objects.Select(o => new bool[ChunkMath.ChunkCount(o.Size, o.ChunkSize)])];
        TotalChunks = _present.Sum(p => (long)p.Length);
    }

    public string SnapshotId => _offer.SnapshotId;
    public IReadOnlyList<ObjectInfo> Objects => _offer.Objects;
    public bool IsComplete { get; private set; }
    public long TotalChunks { get; }
    public long PresentChunks => Interlocked.Read(ref _presentCount);
    public event Action<int, long>? ChunkPresent;

    public bool IsPresent(int objectId, long index) => Volatile.Read(ref _present[objectId][index]);

    public void PutData(int objectId, long index, ChunkHash hash, ReadOnlySpan<byte> data)
    {
        var o = _offer.Objects[objectId];
        RandomAccess.Write(_files[objectId], data, index * o.ChunkSize);
        Mark(objectId, index, hash);
        _store.Index(hash, this, objectId, index);
    }

    public void PutZero(int objectId, long index) => Mark(objectId, index, ChunkHash.ZeroMark);

    public bool TryPutKnown(int objectId, long index, ChunkHash hash)
    {
        if (!_store.TryLocate(hash, out var at))
        {
            return false;
        }
        var o = _offer.Objects[objectId];
        var buffer = new byte[ChunkMath.ChunkLength(o.Size, o.ChunkSize, index)];
        var (a, ao, ai) = at;
        a.Read(ao, ai * a.Objects[ao].ChunkSize, buffer);
        if (ChunkHash.Compute(buffer) != hash)
        {
            return false;
        }
        PutData(objectId, index, hash, buffer);
        return true;
    }

    private void Mark(int objectId, long index, ChunkHash hash)
    {
        _hashes[objectId][index] = hash;
        if (!_present[objectId][index])
        {
            Volatile.Write(ref _present[objectId][index], true);
            Interlocked.Increment(ref _presentCount);
        }
        ChunkPresent?.Invoke(objectId, index);
    }

    public int Read(int objectId, long offset, Span<byte> destination) => RandomAccess.Read(_files[objectId], destination, offset);

    public ValueTask FlushAsync(CancellationToken ct = default) => ValueTask.CompletedTask;

    public ValueTask<SnapshotManifest> CompleteAsync(IReadOnlyList<byte[]> rootHashes, CancellationToken ct = default)
    {
        if (PresentChunks != TotalChunks)
        {
            throw new ProtocolViolationException(ProtocolError.IncompleteSnapshot, $"{PresentChunks}/{TotalChunks}");
        }
        var manifest = new SnapshotManifest { SnapshotId = SnapshotId, CreatedUtc = _offer.CreatedUtc, Origin = _offer.Origin };
        for (var i = 0; i < _offer.Objects.Count; i++)
        {
            var o = _offer.Objects[i];
            var blob = new byte[_hashes[i].Length * 32];
            for (var j = 0; j < _hashes[i].Length; j++)
            {
                _hashes[i][j].Write(blob.AsSpan(j * 32));
            }
            var mo = new ManifestObject { Id = o.Id, Name = o.Name, Kind = o.Kind, Size = o.Size, ChunkSize = o.ChunkSize, ChunkHashes = blob };
            if (!mo.ComputeRootHash().ToArray().AsSpan().SequenceEqual(rootHashes[i]))
            {
                throw new ProtocolViolationException(ProtocolError.RootHashMismatch, o.Name);
            }
            manifest.Objects.Add(mo);
        }
        IsComplete = true;
        return ValueTask.FromResult(manifest);
    }

    public string GetObjectPath(int objectId) => Path.Combine(_store.Directory, "snapshots", SnapshotId, $"obj-{objectId}.raw");

    internal void Close()
    {
        foreach (var f in _files)
        {
            f.Dispose();
        }
    }
}
