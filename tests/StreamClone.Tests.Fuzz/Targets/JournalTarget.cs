using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared.Model;
using StreamClone.Store.Journal;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// The group-commit journal file (journal.log) as found after a crash or on a damaged disk, read by
/// <see cref="GroupCommitJournal"/> alone: the input replaces the file and is replayed (with an owner
/// check that refuses negative object ids, so that path runs too). Then what replay promised must hold:
/// the trusted records are whole and readable, a torn tail is cut exactly, damage lies inside the file and
/// is left as it was; a sound journal takes an append that the next replay reads back last, and a damaged
/// one is rebuilt from its valid records into a sound one. The file lives on tmpfs when there is one.
/// </summary>
internal sealed class JournalTarget : FuzzTarget, IDisposable
{
    private static readonly GroupCommitOptions Options = new() { Owner = "fuzz", Logger = NullLogger.Instance };
    private static readonly JournalRecord Appended = new(7, 3, ChunkHash.Compute("appended"u8));
    private readonly string _directory;
    private readonly string _path;
    private readonly byte[] _journal;

    public JournalTarget()
        : base("journal", typeof(InvalidDataException), typeof(IOException))
    {
        _directory = FuzzScratch.For("journal");
        Directory.CreateDirectory(_directory);
        _path = Path.Combine(_directory, "journal.log");
        using (var journal = GroupCommitJournal.Create(_path, Options))
        {
            for (var i = 0; i < 5; i++)
            {
                journal.Append(new JournalRecord(i % 2, i * 3, i == 2 ? ChunkHash.ZeroMark : ChunkHash.Compute([(byte)i])), 4096);
            }
            journal.FlushAsync().AsTask().GetAwaiter().GetResult();
        }
        _journal = File.ReadAllBytes(_path);
    }

    public override IReadOnlyList<byte[]> Dictionary => JournalSeeds.Dictionary;

    public override IEnumerable<byte[]> Seeds() => JournalSeeds.From(_journal);

    public override void Run(ReadOnlySpan<byte> input)
    {
        File.WriteAllBytes(_path, input.ToArray());
        long expected;
        using (var journal = GroupCommitJournal.Open(_path, readOnly: false, Options))
        {
            var replay = journal.Replay((offset, record) => record.ObjectId < 0 ? $"record at byte {offset}: negative object id" : null);
            var durable = CountDurable(journal);
            Check(durable == replay.Records, $"replay trusts {replay.Records} records, {durable} are readable");
            Check(journal.DurableLength == replay.ValidEnd, $"durable length {journal.DurableLength}, replay's end {replay.ValidEnd}");
            if (replay.Damage is { } damage)
            {
                Check(damage.Offset >= 0 && damage.Offset <= input.Length, $"damage at byte {damage.Offset} of {input.Length}");
                Check(new FileInfo(_path).Length == input.Length, "damage was cut");
                expected = Rebuild(journal);
            }
            else
            {
                Check((replay.ValidEnd - JournalFormat.HeaderSize) % JournalRecord.Size == 0, $"valid end {replay.ValidEnd} splits a record");
                Check(new FileInfo(_path).Length == replay.ValidEnd, $"tail of {replay.TornBytes} bytes not cut to {replay.ValidEnd}");
                journal.Append(Appended, 4096);
                journal.FlushAsync().AsTask().GetAwaiter().GetResult();
                expected = durable + 1;
            }
        }

        // What was just written (an append, or a rebuild) replays sound and whole.
        using var reopened = GroupCommitJournal.Open(_path, readOnly: false, Options);
        var again = reopened.Replay();
        Check(again.Damage is null && again.TornReason is null, $"a journal just written replays with damage '{again.Damage}' or tail '{again.TornReason}'");
        Check(CountDurable(reopened) == expected, $"{CountDurable(reopened)} records replayed, {expected} written");
    }

    /// <summary>Recovery as the store does it, keeping every CRC-valid record.</summary>
    private static long Rebuild(GroupCommitJournal journal)
    {
        var valid = 0L;
        using var rebuild = journal.BeginRebuild();
        journal.ScanAll((_, ok, record) =>
        {
            if (ok)
            {
                rebuild.Add(record);
                valid++;
            }
        });
        rebuild.Commit();
        Check(CountDurable(journal) == valid, $"rebuilt journal holds {CountDurable(journal)} of {valid} records");
        return valid;
    }

    private static long CountDurable(GroupCommitJournal journal)
    {
        long count = 0;
        journal.ReadDurable(_ => count++);
        return count;
    }

    private static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new FuzzInvariantException(message);
        }
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
