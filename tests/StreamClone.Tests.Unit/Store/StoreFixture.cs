using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store;

namespace StreamClone.Tests.Unit.Store;

/// <summary>A store in a fresh temp directory, deleted on dispose. Timer flushes are off so tests decide what is durable.</summary>
internal sealed class TempStore : IDisposable
{
    public TempStore()
    {
        Directory = Path.Combine(Path.GetTempPath(), "sc-store-" + Guid.NewGuid().ToString("N"));
        Store = Open();
    }

    public string Directory { get; }

    public ChunkStoreOptions Options { get; } = new()
    {
        FlushBytes = long.MaxValue,
        FlushInterval = Timeout.InfiniteTimeSpan,
    };

    public ChunkStore Store { get; private set; }

    /// <summary>Closes the store without flushing (as a kill would leave it) and opens it again.</summary>
    public ChunkStore Reopen()
    {
        Store.Dispose();
        Store = Open();
        return Store;
    }

    public string JournalPath(string snapshotId) => Path.Combine(Directory, "snapshots", snapshotId, "journal.log");

    public string ObjectPath(string snapshotId, int objectId) => Path.Combine(Directory, "snapshots", snapshotId, $"obj-{objectId}.raw");

    public void Dispose()
    {
        Store.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private ChunkStore Open() => ChunkStore.Open(Directory, NullLogger.Instance, Options);
}

internal static class Chunks
{
    public const int Page = 4096;

    public static SnapshotOfferMessage Offer(string id, params (int Id, long Size, int ChunkSize)[] objects) => new()
    {
        SnapshotId = id,
        CreatedUtc = new DateTime(2026, 11, 26, 8, 0, 0, DateTimeKind.Utc),
        Origin = "unit-test",
        Objects = [.. objects.Select(o => new ObjectInfo
        {
            Id = o.Id,
            Name = $"obj{o.Id}",
            Kind = ObjectKind.Memory,
            Size = o.Size,
            ChunkSize = o.ChunkSize,
        })],
    };

    /// <summary>Deterministic non-zero bytes: the same seed gives the same chunk (for dedup tests).</summary>
    public static byte[] Data(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        bytes[0] |= 1;
        return bytes;
    }

    public static ChunkHash Put(SnapshotAssembly snapshot, int objectId, long index, int seed)
    {
        var obj = snapshot.Objects.Single(o => o.Id == objectId);
        var data = Data(seed, ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index));
        var hash = ChunkHash.Compute(data);
        snapshot.PutData(objectId, index, hash, data);
        return hash;
    }

    public static byte[] ReadAll(SnapshotAssembly snapshot, int objectId)
    {
        var obj = snapshot.Objects.Single(o => o.Id == objectId);
        var bytes = new byte[obj.Size];
        Assert.Equal(bytes.Length, snapshot.Read(objectId, 0, bytes));
        return bytes;
    }

    public static byte[] ReadChunk(SnapshotAssembly snapshot, int objectId, long index)
    {
        var obj = snapshot.Objects.Single(o => o.Id == objectId);
        var bytes = new byte[ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index)];
        Assert.Equal(bytes.Length, snapshot.Read(objectId, index * obj.ChunkSize, bytes));
        return bytes;
    }

    /// <summary>Root hash the source would send: BLAKE3 over the 32-byte-per-chunk hash list.</summary>
    public static byte[] Root(params ChunkHash[] hashes)
    {
        var list = new byte[hashes.Length * ChunkHash.Size];
        for (var i = 0; i < hashes.Length; i++)
        {
            hashes[i].Write(list.AsSpan(i * ChunkHash.Size));
        }
        return ChunkHash.Compute(list).ToArray();
    }
}
