using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Unit.Transport;

/// <summary>What a relay uses of <see cref="UpstreamSession"/>: the taps, the demand path by chunk index, the bulk-lane control handler.</summary>
public class UpstreamTapTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Records the taps and, at each batch, whether its chunks were already in the store (they must not be: cut-through).</summary>
    private sealed class RecordingObserver(Func<SnapshotAssembly?> snapshot) : IUpstreamObserver
    {
        public List<string> Events { get; } = [];
        public int StoredBeforeTap { get; private set; }

        public void OfferReceived(SnapshotOfferMessage offer) => Events.Add($"offer {offer.SnapshotId} stored={snapshot() is not null}");

        public ValueTask BatchVerifiedAsync(ChunkBatchMessage header, ReadOnlyMemory<byte> payload, CancellationToken ct)
        {
            Events.Add($"batch {header.Sequence}");
            var assembly = snapshot()!;
            for (var i = 0; i < header.Kinds.Length; i++)
            {
                if (header.Kinds[i] == (byte)ChunkEntryKind.Data && assembly.IsPresent(header.ObjectId, header.FirstIndex + i))
                {
                    StoredBeforeTap++;
                }
            }
            return ValueTask.CompletedTask;
        }

        public ValueTask CompletedAsync(SnapshotCompleteMessage completion, CancellationToken ct)
        {
            Events.Add("completed");
            return ValueTask.CompletedTask;
        }
    }

    [Fact]
    public async Task Taps_see_the_offer_first_every_batch_in_sequence_before_it_is_stored_then_completion_and_demand_by_index_fills_the_store()
    {
        using var dir = new TempDir();
        var image = dir.File("mem.img");
        var bytes = new byte[8 << 20];
        new Random(12).NextBytes(bytes);
        await File.WriteAllBytesAsync(image, bytes, Ct);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "tap-session");
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var serving = new List<Task>();
        Task<FrameConnection> ConnectAsync(Lane lane, CancellationToken ct)
        {
            var (client, accepted) = FrameConnection.CreateInMemoryPair(lane, TransportOptions.Default, NullLogger.Instance);
            serving.Add(Task.Run(async () =>
            {
                await using (accepted)
                {
                    await server.ServeAsync(accepted, Ct);
                }
            }, Ct));
            return Task.FromResult(client);
        }

        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        var observer = new RecordingObserver(() => store.GetSnapshot("tap-session"));
        await using (var session = await UpstreamSession.ConnectAsync(ConnectAsync, "memory", store,
            new UpstreamOptions { Observer = observer }, TransportOptions.Default, NullLogger.Instance, Ct))
        {
            // The last 16 chunks, by index, before the bulk stream runs: only the demand lane can bring them.
            var chunks = bytes.Length / 4096;
            await session.EnsurePresentAsync(0, chunks - 16, 16, Ct);
            Assert.All(Enumerable.Range(chunks - 16, 16), i => Assert.True(session.Snapshot.IsPresent(0, i)));
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => session.EnsurePresentAsync(0, chunks - 1, 2, Ct));

            await session.RunAsync();
            Assert.Equal(bytes, await File.ReadAllBytesAsync(session.Snapshot.GetObjectPath(0), Ct));
        }
        await Task.WhenAll(serving);

        Assert.Equal("offer tap-session stored=False", observer.Events[0]);
        Assert.Equal("completed", observer.Events[^1]);
        var batches = observer.Events.Skip(1).SkipLast(1).ToList();
        Assert.NotEmpty(batches);
        Assert.Equal(Enumerable.Range(1, batches.Count).Select(s => $"batch {s}"), batches);
        // Only the 16 chunks fetched on demand were in the store when their batch was tapped.
        Assert.True(observer.StoredBeforeTap <= 16, $"{observer.StoredBeforeTap} chunks were stored before the relay could forward them");
    }

    /// <summary>A hand-played upstream: handshake, offer, inventory, then the test's frames on the bulk lane.</summary>
    private static async Task<(UpstreamSession Session, FrameConnection Bulk, FrameConnection Demand)> ConnectToHandPlayedAsync(ChunkStore store, CancellationToken ct)
    {
        var accepted = new List<FrameConnection>();
        var offer = new SnapshotOfferMessage
        {
            SnapshotId = "control",
            CreatedUtc = new DateTime(2026, 11, 30, 8, 0, 0, DateTimeKind.Utc),
            Origin = "test",
            Objects = [new ObjectInfo { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = 4096, ChunkSize = 4096 }],
        };
        Task<FrameConnection> ConnectAsync(Lane lane, CancellationToken token)
        {
            var (client, server) = FrameConnection.CreateInMemoryPair(lane, TransportOptions.Default, NullLogger.Instance);
            accepted.Add(server);
            _ = Task.Run(async () =>
            {
                await SessionHandshake.ServerAsync(server, NodeRoles.Source, "hand", tls: null, admit: null, token);
                if (lane == Lane.Bulk)
                {
                    await server.SendAsync(FrameType.SnapshotOffer, offer, ReadOnlyMemory<byte>.Empty, token);
                    while (!(await server.ReceiveOneAsync<InventoryMessage>(FrameType.Inventory, token)).Last)
                    {
                    }
                }
            }, ct);
            return Task.FromResult(client);
        }
        var session = await UpstreamSession.ConnectAsync(ConnectAsync, "hand", store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, ct);
        return (session, accepted[0], accepted[1]);
    }

    [Fact]
    public async Task A_control_frame_on_the_bulk_lane_goes_to_the_handler_and_without_one_is_an_unexpected_frame()
    {
        using var dir = new TempDir();
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);

        var (handled, bulk, demand) = await ConnectToHandPlayedAsync(store, Ct);
        await using (handled)
        await using (bulk)
        await using (demand)
        {
            var seen = new TaskCompletionSource<FrameType>(TaskCreationOptions.RunContinuationsAsynchronously);
            handled.BulkControlHandler = (frame, _) =>
            {
                seen.TrySetResult(frame.Type);
                return ValueTask.CompletedTask;
            };
            var run = handled.RunAsync();
            await bulk.SendAsync(FrameType.MulticastJoin, new InventoryMessage(), ReadOnlyMemory<byte>.Empty, Ct);
            Assert.Equal(FrameType.MulticastJoin, await seen.Task.WaitAsync(Ct));
            Assert.False(run.IsCompleted);
        }

        var (strict, bulk2, demand2) = await ConnectToHandPlayedAsync(store, Ct);
        await using (strict)
        await using (bulk2)
        await using (demand2)
        {
            var run = strict.RunAsync();
            await bulk2.SendAsync(FrameType.MulticastLeave, new InventoryMessage(), ReadOnlyMemory<byte>.Empty, Ct);
            var error = await Assert.ThrowsAsync<ProtocolViolationException>(() => run);
            Assert.Equal(ProtocolError.UnexpectedFrame, error.Code);
        }
    }
}
