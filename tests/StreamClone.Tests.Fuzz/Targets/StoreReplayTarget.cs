using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared.Model;
using StreamClone.Store;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// The store's journal (journal.log) as found after a crash or on a damaged disk: the input replaces it,
/// the store is opened (which replays every journal, with the snapshot's own checks and, on damage, the
/// recovery that re-verifies chunks) and the snapshot's durable records are re-verified. The journal
/// file alone is the "journal" target (<see cref="JournalTarget"/>). The store lives on tmpfs when there
/// is one: replay fsyncs what it truncates.
/// </summary>
internal sealed class StoreReplayTarget : FuzzTarget, IDisposable
{
    private static readonly ChunkStoreOptions Options = new() { FlushBytes = long.MaxValue, FlushInterval = Timeout.InfiniteTimeSpan };
    private readonly string _directory;
    private readonly string _journalPath;
    private readonly byte[] _journal;
    private readonly string _snapshotId;

    public StoreReplayTarget()
        : base("store-replay", typeof(InvalidDataException), typeof(IOException))
    {
        _directory = FuzzScratch.For("store-replay");
        var offer = FuzzSnapshot.Offer();
        _snapshotId = offer.SnapshotId;
        using (var store = ChunkStore.Open(_directory, NullLogger.Instance, Options))
        {
            var snapshot = store.OpenSnapshot(offer);
            foreach (var (obj, index) in new[] { (0, 0L), (0, 19L), (1, 2L), (0, 3L), (1, 0L) })
            {
                var chunk = FuzzSnapshot.Chunk(offer.Objects[obj], index);
                if (chunk.AsSpan().ContainsAnyExcept((byte)0))
                {
                    snapshot.PutData(obj, index, ChunkHash.Compute(chunk), chunk);
                }
                else
                {
                    snapshot.PutZero(obj, index);
                }
            }
            snapshot.FlushAsync().AsTask().GetAwaiter().GetResult();
        }
        _journalPath = Path.Combine(_directory, "snapshots", _snapshotId, SnapshotAssembly.JournalFileName);
        _journal = File.ReadAllBytes(_journalPath);
    }

    public override IReadOnlyList<byte[]> Dictionary => JournalSeeds.Dictionary;

    public override IEnumerable<byte[]> Seeds() => JournalSeeds.From(_journal);

    public override void Run(ReadOnlySpan<byte> input)
    {
        File.WriteAllBytes(_journalPath, input.ToArray());
        using var store = ChunkStore.Open(_directory, NullLogger.Instance, Options);
        var snapshot = store.GetSnapshot(_snapshotId) ?? throw new FuzzInvariantException("the snapshot vanished on replay");
        if (snapshot.PresentChunks > snapshot.TotalChunks)
        {
            throw new FuzzInvariantException($"replay marked {snapshot.PresentChunks} of {snapshot.TotalChunks} chunks present");
        }
        snapshot.Verify([], CancellationToken.None);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
