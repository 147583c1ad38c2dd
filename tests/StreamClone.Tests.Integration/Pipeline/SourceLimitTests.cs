using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using StreamClone.Tests.Integration.Infrastructure;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// What one peer can make the source spend is capped: inventory size and time, sessions, connections
/// in their handshake, and how long a silent or non-reading peer holds a session. Real sockets, an
/// in-process source, hand-made peers; the timeouts are short here so the guards can be generous.
/// </summary>
public class SourceLimitTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<string> RandomImageAsync(TempDir dir, long size)
    {
        // Incompressible: every byte goes on the wire, so a peer that stops reading fills its window fast.
        var path = dir.File("random.img");
        await File.WriteAllBytesAsync(path, RandomNumberGenerator.GetBytes((int)size), Ct);
        return path;
    }

    private static async Task AssertServesARealSinkAsync(IPEndPoint endPoint, TempDir dir, string image, string store)
    {
        using var chunkStore = ChunkStore.Open(dir.File(store), NullLogger.Instance);
        await using var session = await UpstreamSession.ConnectAsync(endPoint, chunkStore, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, Ct);
        await session.RunAsync().WaitAsync(Guard, Ct);
        Assert.Equal(await File.ReadAllBytesAsync(image, Ct), await File.ReadAllBytesAsync(session.Snapshot.GetObjectPath(0), Ct));
    }

    private static byte[] RandomHashes(int count) => RandomNumberGenerator.GetBytes(count * ChunkHash.Size);

    /// <summary>Hello, then the source's Hello and offer; returns the offer.</summary>
    private static async Task<SnapshotOfferMessage> OpenBulkAsync(RawFramePeer peer, string sessionId)
    {
        await peer.SendHelloAsync(sessionId, ct: Ct);
        await peer.ReadHeaderAsync<HelloMessage>(FrameType.Hello, Ct);
        return await peer.ReadHeaderAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, Ct);
    }

    [Fact]
    public async Task An_inventory_larger_than_the_offer_is_refused_at_its_first_frame_and_the_source_serves_on()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 11);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "inventory-flood");
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default);

        // The offer has 2048 chunks; one frame of 65,536 hashes (the flood, 100 of them) is past it.
        using var flood = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
        var offer = await OpenBulkAsync(flood, "flood");
        Assert.Equal(2048, offer.Objects.Sum(o => o.Size / o.ChunkSize));
        await flood.SendAsync(FrameType.Inventory, new InventoryMessage { Count = WireLimits.MaxInventoryHashesPerFrame, Last = false },
            RandomHashes(WireLimits.MaxInventoryHashesPerFrame), Ct);
        var error = await flood.ReadErrorAsync(Ct).WaitAsync(Guard, Ct);
        Assert.Equal(ProtocolError.LimitExceeded, error?.Code);
        Assert.Contains("more than the 2048 chunks of the offer", error!.Message, StringComparison.Ordinal);
        await flood.WaitClosedAsync(Ct).WaitAsync(Guard, Ct);

        // A frame over the per-frame limit is refused too, even when the offer is larger.
        using var big = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
        await OpenBulkAsync(big, "big-frame");
        var tooMany = WireLimits.MaxInventoryHashesPerFrame + 1;
        await big.SendAsync(FrameType.Inventory, new InventoryMessage { Count = tooMany, Last = true }, RandomHashes(tooMany), Ct);
        Assert.Equal(ProtocolError.LimitExceeded, (await big.ReadErrorAsync(Ct).WaitAsync(Guard, Ct))?.Code);

        Assert.Empty(source.Ended);
        await AssertServesARealSinkAsync(source.EndPoint, dir, image, "store");
    }

    [Fact]
    public async Task A_session_keeps_at_most_MaxInventoryHashes_of_its_sinks_inventory()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 12);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "inventory-cap");
        await using var source = new InProcessSource(input, new SourceOptions { MaxInventoryHashes = 1000 }, TransportOptions.Default);

        // 2000 hashes: within the offer's 2048 chunks, so legal, but twice what the source keeps.
        using var peer = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
        await OpenBulkAsync(peer, "capped");
        await peer.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 1000, Last = false }, RandomHashes(1000), Ct);
        await peer.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 1000, Last = true }, RandomHashes(1000), Ct);
        // The stream has started once a batch arrives; then the peer leaves and the session ends.
        await peer.ReadHeaderAsync<ChunkBatchMessage>(FrameType.ChunkBatch, Ct).WaitAsync(Guard, Ct);
        peer.Dispose();
        await source.EndedAsync(1);

        var stats = Assert.Single(source.Ended);
        Assert.False(stats.Completed);
        Assert.Equal(1000, stats.InventoryHashes);
    }

    [Fact]
    public async Task An_inventory_trickled_past_the_inventory_timeout_is_refused()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 13);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "inventory-trickle");
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default with { InventoryTimeout = TimeSpan.FromSeconds(2) });

        using var peer = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
        await OpenBulkAsync(peer, "trickle");
        var error = peer.ReadErrorAsync(Ct);
        // One hash every 200 ms: never idle long enough for the idle timeout, never finished.
        var clock = Stopwatch.StartNew();
        while (!error.IsCompleted)
        {
            Assert.True(clock.Elapsed < Guard, "the source never refused the trickled inventory");
            await peer.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 1, Last = false }, RandomHashes(1), Ct);
            await Task.WhenAny(error, Task.Delay(200, Ct));
        }
        var refused = await error;
        Assert.Equal(ProtocolError.LimitExceeded, refused?.Code);
        Assert.Contains("was not complete within 2 s", refused!.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Two_hundred_silent_sessions_are_closed_by_the_timeouts_and_a_real_sink_is_served_meanwhile()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 14);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "silent-hellos");
        var transport = TransportOptions.Default with { HandshakeTimeout = TimeSpan.FromSeconds(3), InventoryTimeout = TimeSpan.FromSeconds(3) };
        await using var source = new InProcessSource(input, new SourceOptions(), transport);

        // Each says Hello on a bulk lane, then nothing: no inventory, ever.
        var silent = new List<RawFramePeer>();
        try
        {
            for (var i = 0; i < 200; i++)
            {
                var peer = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
                silent.Add(peer);
                await peer.SendHelloAsync($"silent-{i}", ct: Ct);
            }

            // They cannot hold the door: a real sink is served while they are still open.
            await AssertServesARealSinkAsync(source.EndPoint, dir, image, "store");

            // Every one of them is closed by the source: evicted as the oldest pending connection, or at the inventory timeout.
            await Task.WhenAll(silent.Select(p => p.WaitClosedAsync(Ct))).WaitAsync(Guard, Ct);
            await source.EndedAsync(1);
            var real = Assert.Single(source.Ended);
            Assert.True(real.Completed, real.Error);
        }
        finally
        {
            foreach (var peer in silent)
            {
                peer.Dispose();
            }
        }
    }

    [Fact]
    public async Task Connections_past_MaxPendingConnections_drop_the_oldest_pending_ones_and_a_real_sink_gets_through()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 15);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "pending-cap");
        // Timeouts far beyond the test: whatever closes here was evicted.
        var transport = TransportOptions.Default with { HandshakeTimeout = TimeSpan.FromMinutes(10), InventoryTimeout = TimeSpan.FromMinutes(10) };
        await using var source = new InProcessSource(input, new SourceOptions { MaxPendingConnections = 16 }, transport);

        var silent = new List<RawFramePeer>();
        try
        {
            for (var i = 0; i < 200; i++)
            {
                var peer = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
                silent.Add(peer);
                await peer.SendHelloAsync($"pending-{i}", ct: Ct);
            }
            var closed = silent.Select(p => p.WaitClosedAsync(Ct)).ToList();
            while (closed.Count(t => t.IsCompleted) < 200 - 16)
            {
                await Task.WhenAny(closed.Where(t => !t.IsCompleted)).WaitAsync(Guard, Ct);
            }

            await AssertServesARealSinkAsync(source.EndPoint, dir, image, "store");
        }
        finally
        {
            foreach (var peer in silent)
            {
                peer.Dispose();
            }
        }
    }

    [Fact]
    public async Task Ten_sinks_that_stop_reading_are_dropped_by_the_write_stall_timeout()
    {
        using var dir = new TempDir();
        var image = await RandomImageAsync(dir, 24 << 20);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "stalled-sinks");
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default with { WriteStallTimeout = TimeSpan.FromSeconds(2) });

        var stalled = new List<RawFramePeer>();
        try
        {
            for (var i = 0; i < 10; i++)
            {
                var peer = await RawFramePeer.ConnectAsync(source.EndPoint, Ct, receiveBuffer: 4096);
                stalled.Add(peer);
                await peer.SendHelloAsync($"stalled-{i}", ct: Ct);
                await peer.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 0, Last = true }, ct: Ct);
                // ... and never read: the window closes after a few kernel buffers of the 24 MiB stream.
            }
            await source.EndedAsync(10);
            Assert.All(source.Ended, s =>
            {
                Assert.False(s.Completed);
                Assert.Contains("the peer stopped reading: nothing sent for 2 s", s.Error, StringComparison.Ordinal);
            });
        }
        finally
        {
            foreach (var peer in stalled)
            {
                peer.Dispose();
            }
        }
        await AssertServesARealSinkAsync(source.EndPoint, dir, image, "store");
    }

    [Fact]
    public async Task A_sink_beyond_MaxSessions_is_refused_with_TooManySessions_and_served_once_a_slot_is_free()
    {
        using var dir = new TempDir();
        var image = await RandomImageAsync(dir, 24 << 20);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "max-sessions");
        await using var source = new InProcessSource(input, new SourceOptions { MaxSessions = 1 }, TransportOptions.Default);

        // The one slot: a session that streams (its first batch arrived) and then stops reading.
        using (var first = await RawFramePeer.ConnectAsync(source.EndPoint, Ct, receiveBuffer: 4096))
        {
            await OpenBulkAsync(first, "first");
            await first.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 0, Last = true }, ct: Ct);
            await first.ReadHeaderAsync<ChunkBatchMessage>(FrameType.ChunkBatch, Ct).WaitAsync(Guard, Ct);

            using var store = ChunkStore.Open(dir.File("refused-store"), NullLogger.Instance);
            var refused = await Assert.ThrowsAsync<ProtocolViolationException>(() =>
                UpstreamSession.ConnectAsync(source.EndPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, Ct));
            Assert.Contains("TooManySessions", refused.Message, StringComparison.Ordinal);
        }

        // The first peer left; its session ends and frees the slot.
        await source.EndedAsync(1);
        await AssertServesARealSinkAsync(source.EndPoint, dir, image, "store");
    }
}
