using CsCheck;
using StreamClone.Shared.Model;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

/// <summary>Random placements (zero, data, duplicate data, known copies) against a byte-array model.</summary>
public sealed class ChunkStorePropertyTests
{
    private enum Op
    {
        Zero,
        Data,
        Known,
    }

    private const int Chunks0 = 9;
    private const long Size0 = (Chunks0 * (long)Page) - 300;
    private const int Chunks1 = 3;
    private const long Size1 = Chunks1 * 2L * Page;

    // Few seeds, so data chunks repeat and Known finds earlier copies.
    private static readonly Gen<(Op Op, int Object, int Index, int Seed)> GenPlacement =
        Gen.Select(Gen.Enum<Op>(), Gen.Int[0, 1], Gen.Int[0, Chunks0 - 1], Gen.Int[1, 4])
            .Select((op, obj, index, seed) => (op, obj, obj == 0 ? index : index % Chunks1, seed));

    [Fact]
    public void Placements_round_trip_through_the_store_and_a_reopen() =>
        Gen.Select(GenPlacement.Array[1, 40], Gen.Int[0, 40]).Sample((placements, flushAfter) =>
        {
            using var temp = new TempStore();
            var offer = Offer("p", (0, Size0, Page), (1, Size1, 2 * Page));
            var snapshot = temp.Store.OpenSnapshot(offer);
            var model = new[] { new byte[Size0], new byte[Size1] };
            var present = new[] { new bool[Chunks0], new bool[Chunks1] };
            var durable = new[] { new bool[Chunks0], new bool[Chunks1] };

            for (var step = 0; step < placements.Length; step++)
            {
                var (op, obj, index, seed) = placements[step];
                var info = offer.Objects[obj];
                var length = ChunkMath.ChunkLength(info.Size, info.ChunkSize, index);
                var data = op == Op.Zero ? new byte[length] : Data(seed, length);
                var hash = op == Op.Zero ? ChunkHash.ZeroMark : ChunkHash.Compute(data);
                var placed = false;
                if (!present[obj][index] || model[obj].AsSpan((int)(index * (long)info.ChunkSize), length).SequenceEqual(data))
                {
                    switch (op)
                    {
                        case Op.Zero:
                            snapshot.PutZero(obj, index);
                            placed = true;
                            break;
                        case Op.Data:
                            snapshot.PutData(obj, index, hash, data);
                            placed = true;
                            break;
                        case Op.Known:
                            placed = snapshot.TryPutKnown(obj, index, hash);
                            Assert.Equal(placed, present[obj][index] || temp.Store.Contains(hash));
                            break;
                    }
                }
                else
                {
                    Assert.ThrowsAny<Exception>(() => snapshot.PutData(obj, index, hash.IsZeroMark ? ChunkHash.Compute(data) : hash, data));
                }
                if (placed && !present[obj][index])
                {
                    data.CopyTo(model[obj], index * (long)info.ChunkSize);
                    present[obj][index] = true;
                }
                if (step == flushAfter)
                {
                    snapshot.FlushAsync().AsTask().GetAwaiter().GetResult();
                    durable = [(bool[])present[0].Clone(), (bool[])present[1].Clone()];
                }
            }
            Check(snapshot, present);

            var reopened = temp.Reopen().OpenSnapshot(offer);
            Check(reopened, durable);

            void Check(StreamClone.Store.SnapshotAssembly s, bool[][] expected)
            {
                for (var obj = 0; obj < 2; obj++)
                {
                    var info = offer.Objects[obj];
                    for (var i = 0; i < expected[obj].Length; i++)
                    {
                        Assert.Equal(expected[obj][i], s.IsPresent(obj, i));
                        if (expected[obj][i])
                        {
                            var length = ChunkMath.ChunkLength(info.Size, info.ChunkSize, i);
                            var bytes = new byte[length];
                            s.Read(obj, i * (long)info.ChunkSize, bytes);
                            Assert.Equal(model[obj].AsSpan((int)(i * (long)info.ChunkSize), length).ToArray(), bytes);
                        }
                    }
                }
                Assert.Equal(expected.Sum(o => o.Count(p => p)), s.PresentChunks);
            }
        }, iter: 60, threads: 1);
}
