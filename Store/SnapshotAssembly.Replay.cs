using System.Globalization;
using MessagePack;
using StreamClone.Shared.Model;

namespace StreamClone.Store;

/// <summary>
/// Replay: rebuilds presence and the hash index from the journal when the store opens.
/// </summary>
/// <remarks>
/// A crash can only damage the end of the journal: records are appended, and an append that did not
/// fully reach the disk leaves its records torn, zeroed or missing. So bad records with nothing valid
/// after them are a torn tail, cut off as before (their chunks are re-sent). Anything else — a bad
/// record followed by valid ones, a record naming a place the snapshot does not have, two records
/// of different kinds for one place, a journal shorter than its header (Create syncs the header
/// before the offer exists) — is damage, not a crash. Then nothing is cut: the journal is copied aside
/// (journal.corrupt-&lt;UTC time&gt;), every chunk a valid record or the manifest names is re-hashed
/// against that hash, and the journal is rebuilt from what matches. Nothing verified is lost, nothing
/// unverified is trusted, and a read-only store does the same in memory without writing.
/// </remarks>
public sealed partial class SnapshotAssembly
{
    internal const string CorruptJournalPrefix = JournalFileName + ".corrupt-";

    /// <summary>Returns the number of records applied (places recovered, after damage).</summary>
    private long Replay()
    {
        var length = RandomAccess.GetLength(_journal);
        Span<byte> header = stackalloc byte[JournalFormat.HeaderSize];
        if (StoreIO.ReadFully(_journal, _journalPath, header, 0) < JournalFormat.HeaderSize)
        {
            return Recover(0, $"{length} bytes, shorter than the {JournalFormat.HeaderSize}-byte header");
        }
        if (!JournalFormat.IsValidHeader(header))
        {
            throw new InvalidDataException($"Chunk store: '{_journalPath}' is not a journal this build can read (bad header).");
        }

        var (damageAt, damage, validEnd, tornReason) = Classify(length);
        if (damage is not null)
        {
            return Recover(damageAt, damage);
        }
        long records = 0;
        JournalFormat.Read(_journal, _journalPath, validEnd, record =>
        {
            ApplyReplayed(record);
            records++;
            return true;
        }, out _);
        if (validEnd < length)
        {
            StoreLog.JournalTailDiscarded(_store.Logger, _journalPath, records, length - validEnd, tornReason ?? "torn record");
            if (!_store.IsReadOnly)
            {
                Truncate(validEnd);
            }
        }
        _journalLength = validEnd;
        return records;
    }

    /// <summary>
    /// Reads the whole journal once without applying anything. Returns either the damage (offset and
    /// reason) or the end of the trusted records with why the rest, if any, is a torn tail.
    /// </summary>
    private (long DamageAt, string? Damage, long ValidEnd, string? TornReason) Classify(long length)
    {
        // Two bits a chunk, only for this pass: seen, and seen as a zero chunk.
        var seen = new ulong[_objects.Length][];
        var seenZero = new ulong[_objects.Length][];
        long firstBadCrc = -1, damageAt = -1;
        string? damage = null;
        var wholeEnd = JournalFormat.Scan(_journal, _journalPath, length, (offset, valid, record) =>
        {
            if (damage is not null)
            {
                return;
            }
            if (!valid)
            {
                firstBadCrc = firstBadCrc < 0 ? offset : firstBadCrc;
                return;
            }
            if (firstBadCrc >= 0)
            {
                (damageAt, damage) = (firstBadCrc, $"record at byte {firstBadCrc} fails its CRC and valid records follow it");
                return;
            }
            if (!_objectsById.TryGetValue(record.ObjectId, out var obj) || (ulong)record.Index >= (ulong)obj.ChunkCount)
            {
                (damageAt, damage) = (offset, $"record at byte {offset} names object {record.ObjectId} chunk {record.Index}, which the snapshot does not have");
                return;
            }
            var words = seen[obj.Position] ??= new ulong[(obj.ChunkCount + 63) / 64];
            var zeroWords = seenZero[obj.Position] ??= new ulong[words.Length];
            var bit = 1UL << (int)(record.Index & 63);
            var word = record.Index >> 6;
            var zero = record.Hash.IsZeroMark;
            if ((words[word] & bit) != 0)
            {
                // The store never journals a place twice; a repeat of the same kind is harmless, another kind is damage.
                if (((zeroWords[word] & bit) != 0) != zero)
                {
                    (damageAt, damage) = (offset, $"record at byte {offset} marks object {record.ObjectId} chunk {record.Index} as {(zero ? "zero" : "data")}, an earlier one as {(zero ? "data" : "zero")}");
                }
                return;
            }
            words[word] |= bit;
            if (zero)
            {
                zeroWords[word] |= bit;
            }
        });
        if (damage is not null)
        {
            return (damageAt, damage, 0, null);
        }
        return firstBadCrc >= 0
            ? (0, null, firstBadCrc, "CRC mismatch")
            : (0, null, wholeEnd, wholeEnd < length ? "torn record" : null);
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

    private void Truncate(long validLength)
    {
        try
        {
            RandomAccess.SetLength(_journal, validLength);
        }
        catch (IOException ex)
        {
            throw StoreIO.Wrap(ex, _journalPath, "truncating");
        }
        StoreIO.Sync(_journal, _journalPath);
    }

    /// <summary>
    /// Damage: keeps a copy of the journal, re-hashes every chunk a valid record (then the manifest)
    /// names, and rebuilds the journal from the chunks whose bytes match. Returns the places recovered.
    /// </summary>
    private long Recover(long damageAt, string damage)
    {
        var readOnly = _store.IsReadOnly;
        var copy = readOnly ? null : CopyJournalAside();
        var rebuilt = readOnly ? null : new JournalRebuilder(_journalPath + ".tmp");
        try
        {
            var buffer = new byte[_objects.Max(o => (int?)o.Info.ChunkSize) ?? 0];
            long fromRecords = 0, fromManifest = 0;
            var length = RandomAccess.GetLength(_journal);
            if (length >= JournalFormat.HeaderSize)
            {
                JournalFormat.Scan(_journal, _journalPath, length, (_, valid, record) =>
                {
                    if (valid && TryRecover(record, buffer))
                    {
                        rebuilt?.Add(record);
                        fromRecords++;
                    }
                });
            }
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

            if (rebuilt is not null)
            {
                _journalLength = rebuilt.Finish();
                rebuilt = null;
                StoreIO.Replace(_journalPath + ".tmp", _journalPath);
                _journal.Dispose();
                _journal = StoreIO.OpenReadWrite(_journalPath, FileMode.Open);
            }
            else
            {
                // Read-only: the journal stays as it is; only its prefix before the damage is read again (verify).
                _journalLength = Math.Max(JournalFormat.HeaderSize, Math.Min(damageAt, length));
            }
            JournalDamage = $"journal '{_journalPath}' is damaged at byte {damageAt} ({damage}); " +
                $"{PresentChunks} of {TotalChunks} chunks re-verified ({fromRecords} by their records, {fromManifest} by the manifest), the rest will be re-sent; " +
                (copy is null ? "store opened read-only, nothing changed" : $"the damaged journal is kept as '{copy}'");
            StoreLog.JournalDamaged(_store.Logger, SnapshotId, JournalDamage);
            return fromRecords + fromManifest;
        }
        finally
        {
            rebuilt?.Abandon();
        }
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

    /// <summary>Copies the journal byte for byte to journal.corrupt-&lt;UTC time&gt; (0600, synced) before anything rewrites it.</summary>
    private string CopyJournalAside()
    {
        var copy = Path.Combine(DirectoryPath, CorruptJournalPrefix + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture));
        using var target = StoreIO.OpenReadWrite(copy, FileMode.CreateNew);
        var buffer = new byte[1 << 20];
        long position = 0;
        int read;
        while ((read = StoreIO.ReadFully(_journal, _journalPath, buffer, position)) > 0)
        {
            StoreIO.Write(target, copy, buffer.AsSpan(0, read), position);
            position += read;
        }
        StoreIO.Sync(target, copy);
        return copy;
    }

    /// <summary>Writes a fresh journal (header, then records in batches) to a temporary file.</summary>
    private sealed class JournalRebuilder
    {
        private const int RecordsPerWrite = 4096;
        private readonly string _path;
        private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _handle;
        private readonly byte[] _batch = new byte[RecordsPerWrite * JournalRecord.Size];
        private int _batched;
        private long _length;

        public JournalRebuilder(string path)
        {
            _path = path;
            _handle = StoreIO.OpenReadWrite(path, FileMode.Create);
            Span<byte> header = stackalloc byte[JournalFormat.HeaderSize];
            JournalFormat.WriteHeader(header);
            StoreIO.Write(_handle, _path, header, 0);
            _length = JournalFormat.HeaderSize;
        }

        public void Add(JournalRecord record)
        {
            record.Write(_batch.AsSpan(_batched * JournalRecord.Size, JournalRecord.Size));
            if (++_batched == RecordsPerWrite)
            {
                WriteBatch();
            }
        }

        /// <summary>Writes what is left, fsyncs and closes; returns the journal's length.</summary>
        public long Finish()
        {
            WriteBatch();
            StoreIO.Sync(_handle, _path);
            _handle.Dispose();
            return _length;
        }

        /// <summary>After a failure: the half-written file goes; the next open recovers again from the untouched journal.</summary>
        public void Abandon()
        {
            _handle.Dispose();
            try
            {
                File.Delete(_path);
            }
            catch (IOException)
            {
                // Leaving it is harmless (the next recovery truncates it); the failure that led here is what gets reported.
            }
        }

        private void WriteBatch()
        {
            var bytes = _batch.AsSpan(0, _batched * JournalRecord.Size);
            StoreIO.Write(_handle, _path, bytes, _length);
            _length += bytes.Length;
            _batched = 0;
        }
    }
}
