using StreamClone.Shared.Model;

namespace StreamClone.Store;

/// <summary>How many leading chunks a <see cref="SnapshotAssembly.ReadVerified"/> delivered, and their bytes.</summary>
public readonly record struct VerifiedRead(int Chunks, int Bytes);

/// <summary>
/// Reads for serving other nodes (a relay's children, demand answers): every chunk re-hashed on the way
/// out, so bytes changed on disk behind the store's back are caught where they would be used, and a
/// chunk that fails is dropped so it is fetched again, never served.
/// </summary>
public sealed partial class SnapshotAssembly
{
    /// <summary>
    /// Reads the present chunks [firstIndex, firstIndex + expected.Length) of an object into
    /// <paramref name="destination"/> (concatenated; only the object's last chunk may be short), each
    /// checked against <paramref name="expected"/>[i], the hash the snapshot's manifest (or offer stream)
    /// gives that place (<see cref="ChunkHash.ZeroMark"/>: must read as zeros). Stops at the first chunk
    /// that is absent or fails; a failing one is dropped (absent, out of the index, logged) so the caller
    /// fetches it upstream. Bytes of a failing or absent chunk are never part of the result, and the
    /// destination past the returned bytes holds nothing read from the store.
    /// Hold a lease (<see cref="ChunkStore.AcquireSnapshot"/>) while serving, or the snapshot may be evicted.
    /// </summary>
    public VerifiedRead ReadVerified(int objectId, long firstIndex, ReadOnlySpan<ChunkHash> expected, Span<byte> destination)
    {
        ThrowIfClosed();
        var obj = GetObject(objectId);
        var count = expected.Length;
        if (count == 0)
        {
            return default;
        }
        if ((ulong)firstIndex >= (ulong)obj.ChunkCount || count > obj.ChunkCount - firstIndex)
        {
            throw new ArgumentOutOfRangeException(nameof(firstIndex),
                $"chunks {firstIndex}..+{count} are outside object {objectId} ({obj.ChunkCount} chunks)");
        }
        var needed = Math.Min(obj.Info.Size, obj.Offset(firstIndex + count)) - obj.Offset(firstIndex);
        if (destination.Length < needed)
        {
            throw new ArgumentException($"{needed} bytes are needed for {count} chunks; the buffer holds {destination.Length}", nameof(destination));
        }

        var chunks = 0;
        var bytes = 0;
        while (chunks < count)
        {
            // One read for each run of present chunks: at 4 KiB chunks the syscall is the cost.
            var runEnd = chunks;
            while (runEnd < count && obj.Presence.IsPresent(firstIndex + runEnd))
            {
                runEnd++;
            }
            if (runEnd == chunks)
            {
                break;
            }
            var runBytes = (int)(Math.Min(obj.Info.Size, obj.Offset(firstIndex + runEnd)) - obj.Offset(firstIndex + chunks));
            var run = destination.Slice(bytes, runBytes);
            var read = StoreIO.ReadFully(obj.Handle, obj.Path, run, obj.Offset(firstIndex + chunks));
            var offset = 0;
            for (; chunks < runEnd; chunks++)
            {
                var index = firstIndex + chunks;
                var length = obj.ChunkLength(index);
                var chunk = run.Slice(offset, length);
                var hash = expected[chunks];
                var good = offset + length <= read && (hash.IsZeroMark
                    ? !chunk.ContainsAnyExcept((byte)0)
                    : ChunkHash.Compute(chunk) == hash);
                if (!good)
                {
                    DropDamaged(obj, index, hash, chunk[..Math.Clamp(read - offset, 0, length)]);
                    // Nothing past the verified prefix leaves here, not even the unchecked rest of the run.
                    run[offset..].Clear();
                    return new VerifiedRead(chunks, bytes);
                }
                offset += length;
                bytes += length;
            }
        }
        return new VerifiedRead(chunks, bytes);
    }

    /// <summary>
    /// Takes a present place whose bytes failed their hash back to absent: counters, the index entries
    /// that point at it (under the expected hash and under what it actually holds), then the claim is
    /// released so the chunk can be put again. Not journaled: after a restart the journal marks it
    /// present again, and the next verified read or Known copy drops it again; nothing unverified is served.
    /// </summary>
    internal void DropDamaged(StoredObject obj, long index, ChunkHash expected, ReadOnlySpan<byte> actual)
    {
        if (_store.IsReadOnly || !obj.Presence.TryUnmarkPresent(index, out var wasZero))
        {
            return;
        }
        obj.CountAbsent(index, wasZero);
        var location = new ChunkLocation(Ordinal, obj.Position, index);
        if (!expected.IsZeroMark)
        {
            _store.IndexRemove(expected, location);
        }
        if (actual.Length == obj.ChunkLength(index))
        {
            _store.IndexRemove(ChunkHash.Compute(actual), location);
        }
        obj.Presence.Release(index);
        StoreLog.StoredChunkDropped(_store.Logger, SnapshotId, obj.Info.Id, index, expected.ToShortString());
    }

    /// <summary>
    /// The hash the durable journal records for each present place (zeros as <see cref="ChunkHash.ZeroMark"/>): what a
    /// relay restarted over a partial snapshot checks <see cref="ReadVerified"/> against, since its stream has not
    /// named those chunks yet. Places dropped as damaged since may still be listed; check presence.
    /// </summary>
    public void ReadDurableHashes(Action<int, long, ChunkHash> visit)
    {
        ArgumentNullException.ThrowIfNull(visit);
        ThrowIfClosed();
        _journal.ReadDurable(record => visit(record.ObjectId, record.Index, record.Hash));
    }

    /// <summary>
    /// After another snapshot's eviction took <paramref name="hashes"/> out of the index: adds this
    /// snapshot's durable copies of them back (the first copy found stays canonical).
    /// </summary>
    internal void IndexAgain(HashSet<ChunkHash> hashes)
    {
        _journal.ReadDurable(record =>
        {
            if (!record.Hash.IsZeroMark && hashes.Contains(record.Hash)
                && _objectsById.TryGetValue(record.ObjectId, out var obj) && obj.Presence.IsPresent(record.Index))
            {
                _store.IndexAdd(record.Hash, new ChunkLocation(Ordinal, obj.Position, record.Index));
            }
        });
    }
}
