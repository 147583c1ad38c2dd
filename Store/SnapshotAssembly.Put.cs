using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store.Journal;

namespace StreamClone.Store;

public sealed partial class SnapshotAssembly
{
    /// <summary>
    /// Raised after each new placement (objectId, index), on the putting thread: readable now, durable
    /// after the next flush. The assembly outlives sessions (a resume gets the same instance), so
    /// handlers must unsubscribe when their session ends.
    /// </summary>
    public event Action<int, long>? ChunkPresent;

    /// <summary>
    /// Places verified bytes. <paramref name="data"/> must be exactly the chunk's length (the last chunk
    /// of an object may be short). A place is written once: a repeat with the same content is ignored,
    /// a repeat with different content is <see cref="ProtocolError.BadChunkPlacement"/>.
    /// </summary>
    public void PutData(int objectId, long index, ChunkHash hash, ReadOnlySpan<byte> data)
    {
        ThrowIfClosed();
        ThrowIfReadOnly();
        var obj = GetObject(objectId);
        obj.CheckIndex(index);
        if (hash.IsZeroMark)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                $"object {objectId} chunk {index}: a data chunk cannot carry the zero mark as its hash");
        }
        var length = obj.ChunkLength(index);
        if (data.Length != length)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                $"object {objectId} chunk {index} is {length} bytes; {data.Length} were given");
        }
        if (!Claim(obj, index, hash))
        {
            return;
        }
        WriteClaimed(obj, index, data);
        Commit(obj, index, hash);
    }

    /// <summary>
    /// <see cref="PutData"/> for the consecutive chunks [firstIndex, firstIndex + hashes.Length), their
    /// bytes concatenated in <paramref name="data"/> (only an object's last chunk may be short).
    /// Stretches of new places go out as one write each: at 4 KiB chunks the syscall, not the copy,
    /// is the cost of a put. Places already present get the same-content check of PutData.
    /// </summary>
    public void PutDataRun(int objectId, long firstIndex, ReadOnlySpan<ChunkHash> hashes, ReadOnlySpan<byte> data)
    {
        ThrowIfClosed();
        ThrowIfReadOnly();
        var obj = GetObject(objectId);
        var count = hashes.Length;
        if (count == 0)
        {
            return;
        }
        obj.CheckIndex(firstIndex);
        obj.CheckIndex(firstIndex + count - 1);
        var expected = Math.Min(obj.Info.Size, obj.Offset(firstIndex + count)) - obj.Offset(firstIndex);
        if (data.Length != expected)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                $"object {objectId} chunks {firstIndex}..{firstIndex + count - 1} are {expected} bytes; {data.Length} were given");
        }
        foreach (var hash in hashes)
        {
            if (hash.IsZeroMark)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                    $"object {objectId} chunks from {firstIndex}: a data chunk cannot carry the zero mark as its hash");
            }
        }

        var chunkSize = obj.Info.ChunkSize;
        var i = 0;
        while (i < count)
        {
            var start = i;
            while (i < count && obj.Presence.TryClaim(firstIndex + i))
            {
                i++;
            }
            if (i > start)
            {
                var end = Math.Min(data.Length, (long)i * chunkSize);
                WriteClaimed(obj, firstIndex + start, i - start, data[(start * chunkSize)..(int)end]);
                for (var k = start; k < i; k++)
                {
                    Commit(obj, firstIndex + k, hashes[k]);
                }
            }
            if (i < count)
            {
                // Held (or being written) by another Put: Claim waits for it and checks the content.
                var index = firstIndex + i;
                if (Claim(obj, index, hashes[i]))
                {
                    var offset = i * chunkSize;
                    WriteClaimed(obj, index, data.Slice(offset, obj.ChunkLength(index)));
                    Commit(obj, index, hashes[i]);
                }
                i++;
            }
        }
    }

    /// <summary>Marks a zero chunk: nothing is written (the sparse file reads zeros there).</summary>
    public void PutZero(int objectId, long index)
    {
        ThrowIfClosed();
        ThrowIfReadOnly();
        var obj = GetObject(objectId);
        obj.CheckIndex(index);
        if (!Claim(obj, index, ChunkHash.ZeroMark))
        {
            return;
        }
        if (_mayHoldUnjournaledBytes)
        {
            ClearStaleBytes(obj, index);
        }
        Commit(obj, index, ChunkHash.ZeroMark);
    }

    /// <summary>
    /// A resumed snapshot's absent places may hold bytes written before a crash but never journaled.
    /// Data puts overwrite the whole chunk; a zero put writes nothing, so it would expose them. Only
    /// possible if a source re-used a snapshot id for other content, but checking costs one read of
    /// (usually) a hole, and only on resumed snapshots.
    /// </summary>
    private void ClearStaleBytes(StoredObject obj, long index)
    {
        var length = obj.ChunkLength(index);
        using var buffer = BatchBufferPool.Shared.Rent(length);
        var bytes = buffer.Span;
        try
        {
            StoreIO.ReadFully(obj.Handle, obj.Path, bytes, obj.Offset(index));
        }
        catch
        {
            obj.Presence.Release(index);
            throw;
        }
        if (bytes.ContainsAnyExcept((byte)0))
        {
            bytes.Clear();
            WriteClaimed(obj, index, bytes); // releases the claim itself on failure
        }
    }

    /// <summary>
    /// Places a chunk the store already holds (in another snapshot, or elsewhere in this one) by a
    /// local copy. The copied bytes are re-hashed first, so a damaged file cannot spread: a mismatch
    /// drops that copy from the index and returns false, as does a hash the store does not hold.
    /// </summary>
    public bool TryPutKnown(int objectId, long index, ChunkHash hash)
    {
        if (hash.IsZeroMark)
        {
            PutZero(objectId, index);
            return true;
        }
        ThrowIfClosed();
        ThrowIfReadOnly();
        var obj = GetObject(objectId);
        obj.CheckIndex(index);
        if (obj.Presence.IsPresent(index))
        {
            // A repeat: no copy needed, only the same-content check.
            EnsureSameContent(obj, index, hash);
            return true;
        }
        if (!_store.TryGetLocation(hash, out var location))
        {
            return false;
        }
        // A reference before reading: the snapshot the index named cannot be evicted (its files closed,
        // its directory removed) while we read it, and one evicted since the lookup is refused here.
        var source = location.Snapshot == Ordinal ? this : _store.TryReference(location.Snapshot);
        if (source is null)
        {
            return false;
        }
        var length = obj.ChunkLength(index);
        using var buffer = BatchBufferPool.Shared.Rent(length);
        var bytes = buffer.Span;
        try
        {
            // Read and verify before claiming: a false return must leave the place free for a Data retry.
            if (!MayCopyFrom(source) || !source.TryReadKnown(location, hash, bytes))
            {
                return false;
            }
        }
        finally
        {
            if (source != this)
            {
                _store.Release(source, writing: false, persistUse: false);
            }
        }
        if (!Claim(obj, index, hash))
        {
            return true;
        }
        WriteClaimed(obj, index, bytes);
        Commit(obj, index, hash);
        return true;
    }

    /// <summary>
    /// Known entries are copied only from snapshots of the same upstream (the rule of
    /// <see cref="ChunkStore.GetInventory(string)"/>). Otherwise a source could name any hash as Known
    /// and learn from whether the sink asks for it again if the store holds it: for a hash it may not
    /// know, the sink always asks, whatever it holds.
    /// </summary>
    private bool MayCopyFrom(SnapshotAssembly source) => source == this || source.Upstream == Upstream;

    /// <summary>
    /// Reads this snapshot's copy at <paramref name="location"/> and re-hashes it. A copy that fails is
    /// dropped (absent here, out of the index) so it is neither copied nor served again.
    /// </summary>
    private bool TryReadKnown(ChunkLocation location, ChunkHash hash, Span<byte> destination)
    {
        var sourceObject = GetObjectAt(location.ObjectPosition);
        if (sourceObject.ChunkLength(location.Index) == destination.Length)
        {
            StoreFaultPoints.Hit(_store.Options, StoreFaultPoints.BeforeKnownRead);
            var read = StoreIO.ReadFully(sourceObject.Handle, sourceObject.Path, destination, sourceObject.Offset(location.Index));
            if (read == destination.Length && ChunkHash.Compute(destination) == hash)
            {
                return true;
            }
            StoreLog.KnownChunkDamaged(_store.Logger, hash.ToShortString(), sourceObject.Path, location.Index);
            _store.IndexRemove(hash, location);
            DropDamaged(sourceObject, location.Index, hash, destination[..read]);
        }
        // A length difference is not damage: equal hashes with different lengths cannot both be right,
        // so the sender's claim is what is wrong. Either way the caller asks for the bytes instead.
        return false;
    }

    /// <summary>
    /// Takes ownership of a place. False when it is (or becomes) present already with the same
    /// content: the Put is a no-op. Throws when it holds different content.
    /// </summary>
    private bool Claim(StoredObject obj, long index, ChunkHash hash)
    {
        var spin = new SpinWait();
        while (true)
        {
            if (obj.Presence.TryClaim(index))
            {
                return true;
            }
            if (obj.Presence.IsPresent(index))
            {
                EnsureSameContent(obj, index, hash);
                return false;
            }
            // Another Put is writing this place right now: wait for it to finish (or fail and release).
            spin.SpinOnce();
        }
    }

    private void EnsureSameContent(StoredObject obj, long index, ChunkHash hash)
    {
        var heldZero = obj.Presence.IsZero(index);
        bool same;
        if (heldZero || hash.IsZeroMark)
        {
            same = heldZero == hash.IsZeroMark;
        }
        else if (_store.TryGetLocation(hash, out var location) && location == new ChunkLocation(Ordinal, obj.Position, index))
        {
            same = true;
        }
        else
        {
            // Repeats are rare (a resumed stream re-sending a place), so re-hashing the held bytes is
            // cheaper than keeping 32 bytes of hash per place in memory.
            var length = obj.ChunkLength(index);
            using var buffer = BatchBufferPool.Shared.Rent(length);
            var bytes = buffer.Span;
            StoreIO.ReadFully(obj.Handle, obj.Path, bytes, obj.Offset(index));
            same = ChunkHash.Compute(bytes) == hash;
        }
        if (!same)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadChunkPlacement,
                $"snapshot {SnapshotId} object {obj.Info.Id} chunk {index} already holds other content than {(hash.IsZeroMark ? "a zero chunk" : hash.ToShortString())}");
        }
    }

    private void WriteClaimed(StoredObject obj, long index, ReadOnlySpan<byte> data) => WriteClaimed(obj, index, 1, data);

    /// <summary>
    /// Writes <paramref name="count"/> claimed, consecutive places with one positional write. On
    /// failure nothing was recorded for them: the claims are released so a retry (after freeing
    /// space) can write them.
    /// </summary>
    private void WriteClaimed(StoredObject obj, long firstIndex, int count, ReadOnlySpan<byte> data)
    {
        try
        {
            StoreFaultPoints.Hit(_store.Options, StoreFaultPoints.BeforeDataWrite);
            StoreIO.Write(obj.Handle, obj.Path, data, obj.Offset(firstIndex));
        }
        catch (Exception ex)
        {
            for (var i = 0; i < count; i++)
            {
                obj.Presence.Release(firstIndex + i);
            }
            if (ex is IOException io)
            {
                var wrapped = StoreIO.Wrap(io, obj.Path, "writing a chunk into");
                StoreLog.StoreIoFailed(_store.Logger, obj.Path, "writing a chunk", wrapped.Message);
                if (!ReferenceEquals(wrapped, io))
                {
                    throw wrapped;
                }
            }
            throw;
        }
        obj.MarkDirty();
    }

    /// <summary>
    /// Makes a written place visible: append its journal record, then presence, index and event.
    /// The record is queued before the bit is set so a FlushAsync that starts after IsPresent turns
    /// true always covers the chunk.
    /// </summary>
    private void Commit(StoredObject obj, long index, ChunkHash hash)
    {
        var zero = hash.IsZeroMark;
        _journal.Append(new JournalRecord(obj.Info.Id, index, hash), zero ? 0 : obj.ChunkLength(index));
        obj.Presence.MarkPresent(index, zero);
        obj.CountPresent(index, zero);
        if (!zero)
        {
            _store.IndexAdd(hash, new ChunkLocation(Ordinal, obj.Position, index));
        }
        ChunkPresent?.Invoke(obj.Info.Id, index);
    }
}
