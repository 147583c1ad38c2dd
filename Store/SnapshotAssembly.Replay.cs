using MessagePack;
using StreamClone.Shared.Model;
using StreamClone.Store.Journal;

namespace StreamClone.Store;

/// <summary>
/// Replay: rebuilds presence and the hash index from the journal when the store opens.
/// </summary>
/// <remarks>
/// The journal itself tells a torn tail (cut, its chunks re-sent) from damage (see
/// <see cref="GroupCommitJournal.Replay"/>); the snapshot adds what only it can check: a record naming
/// a place the snapshot does not have, or two records of different kinds for one place, is damage too.
/// On damage nothing is cut: the journal is copied aside (journal.log.corrupt-&lt;UTC time&gt;), every chunk
/// a valid record or the manifest names is re-hashed against that hash, and the journal is rebuilt
/// from what matches. Nothing verified is lost, nothing unverified is trusted, and a read-only store
/// does the same in memory without writing.
/// </remarks>
public sealed partial class SnapshotAssembly
{
    internal const string CorruptJournalPrefix = JournalFileName + GroupCommitJournal.CorruptCopyInfix;

    /// <summary>Returns the number of records applied (places recovered, after damage).</summary>
    private long Replay()
    {
        var replay = _journal.Replay(RecordFitsCheck());
        if (replay.Damage is { } damage)
        {
            return Recover(damage);
        }
        long records = 0;
        _journal.ReadDurable(record =>
        {
            ApplyReplayed(record);
            records++;
        });
        return records;
    }

    /// <summary>
    /// The snapshot's part of telling damage from a torn tail, for <see cref="GroupCommitJournal.Replay"/>:
    /// null for a record that fits, else why it does not. Keeps two bits a chunk, only for this pass:
    /// seen, and seen as a zero chunk.
    /// </summary>
    private Func<long, JournalRecord, string?> RecordFitsCheck()
    {
        var seen = new ulong[_objects.Length][];
        var seenZero = new ulong[_objects.Length][];
        return (offset, record) =>
        {
            if (!_objectsById.TryGetValue(record.ObjectId, out var obj) || (ulong)record.Index >= (ulong)obj.ChunkCount)
            {
                return $"record at byte {offset} names object {record.ObjectId} chunk {record.Index}, which the snapshot does not have";
            }
            var words = seen[obj.Position] ??= new ulong[(obj.ChunkCount + 63) / 64];
            var zeroWords = seenZero[obj.Position] ??= new ulong[words.Length];
            var bit = 1UL << (int)(record.Index & 63);
            var word = record.Index >> 6;
            var zero = record.Hash.IsZeroMark;
            if ((words[word] & bit) != 0)
            {
                // The store never journals a place twice; a repeat of the same kind is harmless, another kind is damage.
                return ((zeroWords[word] & bit) != 0) != zero
                    ? $"record at byte {offset} marks object {record.ObjectId} chunk {record.Index} as {(zero ? "zero" : "data")}, an earlier one as {(zero ? "data" : "zero")}"
                    : null;
            }
            words[word] |= bit;
            if (zero)
            {
                zeroWords[word] |= bit;
            }
            return null;
        };
    }

    /// <summary>Applies a record classified sound: presence, counters, index.</summary>
    private void ApplyReplayed(JournalRecord record)
    {
        var obj = _objectsById[record.ObjectId];
        if (!obj.Presence.TryClaim(record.Index))
        {
            return; // a repeat of the same kind (Classify refused the other kind)
        }
        MarkRecovered(obj, record.Index, record.Hash);
    }

    private void MarkRecovered(StoredObject obj, long index, ChunkHash hash)
    {
        var zero = hash.IsZeroMark;
        obj.Presence.MarkPresent(index, zero);
        obj.CountPresent(index, zero);
        if (!zero)
        {
            _store.IndexAdd(hash, new ChunkLocation(Ordinal, obj.Position, index));
        }
    }

    /// <summary>
    /// Damage: keeps a copy of the journal, re-hashes every chunk a valid record (then the manifest)
    /// names, and rebuilds the journal from the chunks whose bytes match. Returns the places recovered.
    /// </summary>
    private long Recover(ReplayDamage damage)
    {
        var readOnly = _store.IsReadOnly;
        var copy = readOnly ? null : _journal.CopyAside();
        using var rebuilt = readOnly ? null : _journal.BeginRebuild();
        var buffer = new byte[_objects.Max(o => (int?)o.Info.ChunkSize) ?? 0];
        long fromRecords = 0, fromManifest = 0;
        _journal.ScanAll((_, valid, record) =>
        {
            if (valid && TryRecover(record, buffer))
            {
                rebuilt?.Add(record);
                fromRecords++;
            }
        });
        var manifest = TryReadOwnManifest();
        if (manifest is not null)
        {
            foreach (var obj in _objects)
            {
                var listed = manifest.Objects[obj.Position];
                for (long i = 0; i < obj.ChunkCount; i++)
                {
                    if (!obj.Presence.IsPresent(i) && TryRecover(new JournalRecord(obj.Info.Id, i, listed.GetHash(i)), buffer))
                    {
                        rebuilt?.Add(new JournalRecord(obj.Info.Id, i, listed.GetHash(i)));
                        fromManifest++;
                    }
                }
            }
        }

        // Read-only: the journal stays as it is; only its records before the damage are read again (verify).
        rebuilt?.Commit();
        JournalDamage = $"journal '{_journal.FilePath}' is damaged at byte {damage.Offset} ({damage.Reason}); " +
            $"{PresentChunks} of {TotalChunks} chunks re-verified ({fromRecords} by their records, {fromManifest} by the manifest), the rest will be re-sent; " +
            (copy is null ? "store opened read-only, nothing changed" : $"the damaged journal is kept as '{copy}'");
        StoreLog.JournalDamaged(_store.Logger, SnapshotId, JournalDamage);
        return fromRecords + fromManifest;
    }

    /// <summary>Verifies the bytes at the record's place against its hash and marks the place present if they match.</summary>
    private bool TryRecover(JournalRecord record, byte[] buffer)
    {
        if (!_objectsById.TryGetValue(record.ObjectId, out var obj) || (ulong)record.Index >= (ulong)obj.ChunkCount
            || obj.Presence.IsPresent(record.Index))
        {
            // Not a place of this snapshot, or already recovered (the first record whose hash the bytes match wins).
            return false;
        }
        var bytes = buffer.AsSpan(0, obj.ChunkLength(record.Index));
        var read = StoreIO.ReadFully(obj.Handle, obj.Path, bytes, obj.Offset(record.Index));
        // Past the end of a file whose sparse extension a crash lost reads as the hole it stands for.
        bytes[read..].Clear();
        var matches = record.Hash.IsZeroMark ? !bytes.ContainsAnyExcept((byte)0) : ChunkHash.Compute(bytes) == record.Hash;
        if (!matches)
        {
            return false;
        }
        obj.Presence.TryClaim(record.Index);
        MarkRecovered(obj, record.Index, record.Hash);
        return true;
    }

    /// <summary>The stored manifest if it is readable and describes exactly this snapshot's objects; null otherwise.</summary>
    private SnapshotManifest? TryReadOwnManifest()
    {
        SnapshotManifest? manifest;
        try
        {
            manifest = ReadManifest();
        }
        catch (Exception ex) when (ex is IOException or InvalidDataException or MessagePackSerializationException)
        {
            return null;
        }
        if (manifest is null || manifest.SnapshotId != SnapshotId || manifest.Objects.Count != _objects.Length)
        {
            return null;
        }
        for (var i = 0; i < _objects.Length; i++)
        {
            var (listed, info) = (manifest.Objects[i], _objects[i].Info);
            if (listed.Id != info.Id || listed.Size != info.Size || listed.ChunkSize != info.ChunkSize || !listed.HasAllHashes)
            {
                return null;
            }
        }
        return manifest;
    }
}
