using System.Globalization;
using Microsoft.Win32.SafeHandles;

namespace StreamClone.Store.Journal;

/// <summary>
/// Replay (which records to trust when the journal opens) and what damage recovery needs: a copy of
/// the file as found, a scan of every record in it, and a rebuilt journal replacing it.
/// </summary>
/// <remarks>
/// A crash can only damage the end of the journal: records are appended, and an append that did not
/// fully reach the disk leaves its records torn, zeroed or missing. So bad records with nothing valid
/// after them are a torn tail: replay cuts it off (a read-only journal only reports it) and reports
/// its length and reason. Anything else is damage, not a crash, reported with its byte offset and
/// never cut: a record failing its CRC with valid records after it, a valid record the owner's check
/// refuses, a file shorter than its header (<see cref="Create"/> syncs the header before the owner
/// exists). The owner then recovers: <see cref="CopyAside"/>, re-verify what <see cref="ScanAll"/>
/// shows, and <see cref="BeginRebuild"/> a journal from what verified.
/// </remarks>
internal sealed partial class GroupCommitJournal
{
    /// <summary>A damaged journal is kept as &lt;journal&gt;.corrupt-&lt;UTC time&gt; (see <see cref="CopyAside"/>).</summary>
    public const string CorruptCopyInfix = ".corrupt-";

    /// <summary>
    /// Reads the journal once after <see cref="Open"/> and decides what is trusted.
    /// <paramref name="check"/>, if given, sees every CRC-valid record (with its byte offset) in file order
    /// until damage is found, and returns null to accept it or why it cannot be (then that record is the
    /// damage). Sound journal: a torn tail is cut (writable) and <see cref="ReadDurable"/> covers the
    /// trusted records; appends go on after them. Damage: nothing is changed, <see cref="ReadDurable"/>
    /// covers the records before the damage, and a writable journal takes appends only after
    /// <see cref="BeginRebuild"/> committed. A header of another format is refused with
    /// <see cref="InvalidDataException"/>.
    /// </summary>
    public JournalReplay Replay(Func<long, JournalRecord, string?>? check = null)
    {
        if (_mayAppend)
        {
            throw new InvalidOperationException($"Journal '{FilePath}' is replayed once, after Open and before any append.");
        }
        var length = RandomAccess.GetLength(_handle);
        Span<byte> header = stackalloc byte[JournalFormat.HeaderSize];
        if (StoreIO.ReadFully(_handle, FilePath, header, 0) < JournalFormat.HeaderSize)
        {
            return Damaged(length, new ReplayDamage(0, $"{length} bytes, shorter than the {JournalFormat.HeaderSize}-byte header"));
        }
        if (!JournalFormat.IsValidHeader(header))
        {
            throw new InvalidDataException($"Chunk store: '{FilePath}' is not a journal this build can read (bad header).");
        }

        long firstBadCrc = -1;
        ReplayDamage? damage = null;
        var wholeEnd = Scan(length, (offset, valid, record) =>
        {
            if (!valid)
            {
                firstBadCrc = firstBadCrc < 0 ? offset : firstBadCrc;
                return true;
            }
            if (firstBadCrc >= 0)
            {
                damage = new ReplayDamage(firstBadCrc, $"record at byte {firstBadCrc} fails its CRC and valid records follow it");
                return false;
            }
            if (check?.Invoke(offset, record) is { } refused)
            {
                damage = new ReplayDamage(offset, refused);
                return false;
            }
            return true;
        });
        if (damage is { } found)
        {
            return Damaged(length, found);
        }

        var (validEnd, tornReason) = firstBadCrc >= 0
            ? (firstBadCrc, "CRC mismatch")
            : (wholeEnd, wholeEnd < length ? "torn record" : null);
        var replay = new JournalReplay(length, validEnd, tornReason, null);
        if (tornReason is not null)
        {
            StoreLog.JournalTailDiscarded(_options.Logger, FilePath, replay.Records, replay.TornBytes, tornReason);
            if (!_readOnly)
            {
                Truncate(validEnd);
            }
        }
        Interlocked.Exchange(ref _durableLength, validEnd);
        _mayAppend = !_readOnly;
        return replay;
    }

    /// <summary>
    /// Visits every whole record in the file as it is now — not only the trusted ones — with its byte
    /// offset and whether its CRC holds (a default record when it does not): recovery re-checks what
    /// each valid record claims. A file shorter than its header has none.
    /// </summary>
    public void ScanAll(Action<long, bool, JournalRecord> visit)
    {
        ArgumentNullException.ThrowIfNull(visit);
        var length = RandomAccess.GetLength(_handle);
        if (length >= JournalFormat.HeaderSize)
        {
            Scan(length, (offset, valid, record) =>
            {
                visit(offset, valid, record);
                return true;
            });
        }
    }

    /// <summary>
    /// Copies the journal byte for byte to &lt;journal&gt;.corrupt-&lt;UTC time&gt; (0600, synced) before anything
    /// rewrites it; returns the copy's path.
    /// </summary>
    public string CopyAside()
    {
        ThrowIfReadOnly();
        var copy = FilePath + CorruptCopyInfix + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture);
        using var target = StoreIO.OpenReadWrite(copy, FileMode.CreateNew);
        var buffer = new byte[1 << 20];
        long position = 0;
        int read;
        while ((read = StoreIO.ReadFully(_handle, FilePath, buffer, position)) > 0)
        {
            StoreIO.Write(target, copy, buffer.AsSpan(0, read), position);
            position += read;
        }
        StoreIO.Sync(target, copy);
        return copy;
    }

    /// <summary>
    /// Starts writing a fresh journal (to &lt;journal&gt;.tmp) that replaces this one when committed: the damage
    /// recovery path, run before the owner is published (no appends or flushes run meanwhile).
    /// </summary>
    public JournalRebuild BeginRebuild()
    {
        ThrowIfReadOnly();
        return new JournalRebuild(this);
    }

    private JournalReplay Damaged(long length, ReplayDamage damage)
    {
        // What ReadDurable covers until a rebuild: the records before the damage (none when the header is short).
        var prefix = Math.Max(JournalFormat.HeaderSize, Math.Min(damage.Offset, length));
        Interlocked.Exchange(ref _durableLength, prefix);
        return new JournalReplay(length, prefix, null, damage);
    }

    private void Truncate(long validLength)
    {
        try
        {
            RandomAccess.SetLength(_handle, validLength);
        }
        catch (IOException ex)
        {
            throw StoreIO.Wrap(ex, FilePath, "truncating");
        }
        StoreIO.Sync(_handle, FilePath);
    }

    private void ThrowIfReadOnly()
    {
        if (_readOnly)
        {
            throw new InvalidOperationException($"Journal '{FilePath}' is open read-only.");
        }
    }

    /// <summary>The rebuilt file is in place: the journal appends to it from its end.</summary>
    private void Replaced(long length)
    {
        _handle.Dispose();
        _handle = StoreIO.OpenReadWrite(FilePath, FileMode.Open);
        Interlocked.Exchange(ref _durableLength, length);
        _mayAppend = true;
    }

    /// <summary>
    /// A fresh journal being written (header, then records in blocks) to a temporary file. <see cref="Commit"/>
    /// syncs it and renames it over the journal; disposing it uncommitted deletes it, leaving the journal
    /// as it was (the next open recovers again).
    /// </summary>
    public sealed class JournalRebuild : IDisposable
    {
        private readonly GroupCommitJournal _journal;
        private readonly string _path;
        private readonly SafeFileHandle _handle;
        private readonly byte[] _block = new byte[JournalFormat.RecordsPerBlock * JournalRecord.Size];
        private int _batched;
        private long _length;
        private bool _finished;

        internal JournalRebuild(GroupCommitJournal journal)
        {
            _journal = journal;
            _path = journal.FilePath + ".tmp";
            _handle = StoreIO.OpenReadWrite(_path, FileMode.Create);
            try
            {
                Span<byte> header = stackalloc byte[JournalFormat.HeaderSize];
                JournalFormat.WriteHeader(header);
                StoreIO.Write(_handle, _path, header, 0);
                _length = JournalFormat.HeaderSize;
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        /// <summary>Records added so far.</summary>
        public long Records => ((_length - JournalFormat.HeaderSize) / JournalRecord.Size) + _batched;

        public void Add(JournalRecord record)
        {
            ObjectDisposedException.ThrowIf(_finished, this);
            record.Write(_block.AsSpan(_batched * JournalRecord.Size, JournalRecord.Size));
            if (++_batched == JournalFormat.RecordsPerBlock)
            {
                WriteBlock();
            }
        }

        /// <summary>Writes what is left, fsyncs, renames over the journal (directory synced) and reopens it there.</summary>
        public void Commit()
        {
            ObjectDisposedException.ThrowIf(_finished, this);
            WriteBlock();
            StoreIO.Sync(_handle, _path);
            _handle.Dispose();
            _finished = true;
            StoreIO.Replace(_path, _journal.FilePath);
            _journal.Replaced(_length);
        }

        /// <summary>Uncommitted: the half-written file goes; the journal is untouched.</summary>
        public void Dispose()
        {
            if (_finished)
            {
                return;
            }
            _finished = true;
            _handle.Dispose();
            try
            {
                File.Delete(_path);
            }
            catch (IOException)
            {
                // Leaving it is harmless (the next rebuild truncates it); the failure that led here is what gets reported.
            }
        }

        private void WriteBlock()
        {
            var bytes = _block.AsSpan(0, _batched * JournalRecord.Size);
            StoreIO.Write(_handle, _path, bytes, _length);
            _length += bytes.Length;
            _batched = 0;
        }
    }
}

/// <summary>What <see cref="GroupCommitJournal.Replay"/> found.</summary>
/// <param name="FileLength">The file's length as found.</param>
/// <param name="ValidEnd">End of the trusted records (what <see cref="GroupCommitJournal.ReadDurable"/> covers); with damage, the records before it.</param>
/// <param name="TornReason">Why the bytes after <paramref name="ValidEnd"/> are a torn tail ("torn record", "CRC mismatch"); null when there are none or on damage.</param>
/// <param name="Damage">Damage other than a torn tail, with its byte offset; null for a sound journal.</param>
internal sealed record JournalReplay(long FileLength, long ValidEnd, string? TornReason, ReplayDamage? Damage)
{
    /// <summary>Trusted records.</summary>
    public long Records => Math.Max(0, ValidEnd - JournalFormat.HeaderSize) / JournalRecord.Size;

    /// <summary>Bytes of torn tail cut off (reported only, when read-only).</summary>
    public long TornBytes => TornReason is null ? 0 : FileLength - ValidEnd;
}

/// <summary>Damage replay found: where (byte offset in the file) and what.</summary>
internal readonly record struct ReplayDamage(long Offset, string Reason);
