using Microsoft.Win32.SafeHandles;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Store;

/// <summary>One object of a snapshot: its raw file, presence bits and counters.</summary>
internal sealed class StoredObject : IDisposable
{
    private long _presentChunks;
    private long _zeroChunks;
    private long _dataBytes;
    private int _dirty;

    public StoredObject(ObjectInfo info, int position, string path, SafeFileHandle handle)
    {
        Info = info;
        Position = position;
        Path = path;
        Handle = handle;
        ChunkCount = ChunkMath.ChunkCount(info.Size, info.ChunkSize);
        Presence = new PresenceMap(ChunkCount);
    }

    public ObjectInfo Info { get; }

    /// <summary>Index in the offer's object list: root hashes and index locations use it.</summary>
    public int Position { get; }

    public string Path { get; }

    /// <summary>Read-write handle used for all positional IO (pread/pwrite are thread-safe on one handle).</summary>
    public SafeFileHandle Handle { get; }

    public long ChunkCount { get; }

    public PresenceMap Presence { get; }

    public long PresentChunks => Volatile.Read(ref _presentChunks);

    public long ZeroChunks => Volatile.Read(ref _zeroChunks);

    public long DataBytes => Volatile.Read(ref _dataBytes);

    public static string FileName(int objectId) => $"obj-{objectId}.raw";

    public long Offset(long index) => index * Info.ChunkSize;

    public int ChunkLength(long index) => ChunkMath.ChunkLength(Info.Size, Info.ChunkSize, index);

    public void CheckIndex(long index)
    {
        if ((ulong)index >= (ulong)ChunkCount)
        {
            ThrowBadIndex(index);
        }
    }

    /// <summary>Counts a newly present chunk; call after <see cref="PresenceMap.MarkPresent"/>.</summary>
    public void CountPresent(long index, bool zero)
    {
        Interlocked.Increment(ref _presentChunks);
        if (zero)
        {
            Interlocked.Increment(ref _zeroChunks);
        }
        else
        {
            Interlocked.Add(ref _dataBytes, ChunkLength(index));
        }
    }

    /// <summary>Data was written since the last flush took the flag, so the file needs an fsync.</summary>
    /// <summary>Undoes <see cref="CountPresent"/> for a place taken back to absent.</summary>
    public void CountAbsent(long index, bool zero)
    {
        Interlocked.Decrement(ref _presentChunks);
        if (zero)
        {
            Interlocked.Decrement(ref _zeroChunks);
        }
        else
        {
            Interlocked.Add(ref _dataBytes, -ChunkLength(index));
        }
    }

    public void MarkDirty() => Volatile.Write(ref _dirty, 1);

    public bool TakeDirty() => Interlocked.Exchange(ref _dirty, 0) != 0;

    public void Dispose() => Handle.Dispose();

    private void ThrowBadIndex(long index) =>
        Shared.ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
            $"chunk index {index} is outside object {Info.Id} ({ChunkCount} chunks)");
}
