using System.Buffers;
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

namespace StreamClone.Tests.Integration.Fanout;

/// <summary>
/// A source encodes its snapshot once, whatever the number of sinks, and each sink reads the encoded stream at
/// its own pace: late joiners get the same snapshot, and a sink that stops reading slows nobody else.
/// Real sockets, an in-process source, real sink sessions and stores.
/// </summary>
public class EncodeOnceTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);
    private const int ChunkSize = 4096;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Random pages with every 4th zero and every 5th a copy of page 0: data, zero and dedup entries alike.</summary>
    private static async Task<string> MixedImageAsync(TempDir dir, int pages)
    {
        var image = RandomNumberGenerator.GetBytes(pages * ChunkSize);
        for (var p = 1; p < pages; p++)
        {
            var page = image.AsSpan(p * ChunkSize, ChunkSize);
            if (p % 4 == 0)
            {
                page.Clear();
            }
            else if (p % 5 == 0)
            {
                image.AsSpan(0, ChunkSize).CopyTo(page);
            }
        }
        var path = dir.File("mixed.img");
        await File.WriteAllBytesAsync(path, image, Ct);
        return path;
    }

    private static async Task PullAndCompareAsync(IPEndPoint endPoint, TempDir dir, string image, string store)
    {
        using var chunkStore = ChunkStore.Open(dir.File(store), NullLogger.Instance);
        await using var session = await UpstreamSession.ConnectAsync(endPoint, chunkStore, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, Ct);
        await session.RunAsync().WaitAsync(Guard, Ct);
        Assert.Equal(await File.ReadAllBytesAsync(image, Ct), await File.ReadAllBytesAsync(session.Snapshot.GetObjectPath(0), Ct));
    }

    [Fact]
    public async Task Three_sinks_on_one_source_cost_one_classify_and_encode_per_batch()
    {
        using var dir = new TempDir();
        const int Pages = 2048;
        var image = await MixedImageAsync(dir, Pages);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], ChunkSize, "encode-once");
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default);

        await Task.WhenAll(Enumerable.Range(0, 3).Select(i => PullAndCompareAsync(source.EndPoint, dir, image, $"store-{i}")));
        await source.EndedAsync(3);

        var batches = Pages / new SourceOptions().BatchChunks;
        Assert.All(source.Ended, s => Assert.True(s.Completed, s.Error));
        Assert.Equal(batches, source.Server.Stream.Count);
        Assert.Equal(batches, source.Server.BatchesEncoded);
        // Every sink got every batch (nothing held before), each the snapshot's whole input.
        Assert.All(source.Ended, s => Assert.Equal((long)Pages * ChunkSize, s.InputBytes));
    }

    [Fact]
    public async Task A_sink_that_connects_after_another_finished_gets_an_identical_snapshot_without_a_second_encode()
    {
        using var dir = new TempDir();
        const int Pages = 1024;
        var image = await MixedImageAsync(dir, Pages);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], ChunkSize, "late-joiner");
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default);

        await PullAndCompareAsync(source.EndPoint, dir, image, "early");
        await source.EndedAsync(1);
        Assert.True(source.Server.Stream.IsComplete);
        var encoded = source.Server.BatchesEncoded;

        await PullAndCompareAsync(source.EndPoint, dir, image, "late");
        await source.EndedAsync(2);
        Assert.All(source.Ended, s => Assert.True(s.Completed, s.Error));
        Assert.Equal(encoded, source.Server.BatchesEncoded);
        Assert.Equal(source.Ended[0].PayloadBytes, source.Ended[1].PayloadBytes);
    }

    [Fact]
    public async Task A_sink_that_never_reads_does_not_slow_the_others_and_is_dropped_by_its_write_stall_timeout()
    {
        using var dir = new TempDir();
        // Incompressible and large enough that the stalled peer's socket buffers fill long before the end.
        var path = dir.File("random.img");
        await File.WriteAllBytesAsync(path, RandomNumberGenerator.GetBytes(16 << 20), Ct);
        await using var input = ImageFileInput.Open([(path, ObjectKind.Memory)], ChunkSize, "stalled-child");
        var stall = TimeSpan.FromSeconds(15);
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default with { WriteStallTimeout = stall });

        using var stalled = await RawFramePeer.ConnectAsync(source.EndPoint, Ct, receiveBuffer: 4096);
        await stalled.SendHelloAsync("stalled", ct: Ct);
        await stalled.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 0, Last = true }, ct: Ct);
        // ... and never reads.

        await Task.WhenAll(PullAndCompareAsync(source.EndPoint, dir, path, "a"), PullAndCompareAsync(source.EndPoint, dir, path, "b"));
        await source.EndedAsync(2);
        // Both finished while the stalled session still ran: its stall cost them nothing.
        Assert.Equal(2, source.Ended.Count(s => s.Completed));
        Assert.Contains(source.Server.ActiveSessions, s => s.SessionId == "stalled");

        await source.EndedAsync(3);
        var dropped = Assert.Single(source.Ended, s => !s.Completed);
        Assert.Contains("the peer stopped reading", dropped.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_sink_holding_a_batchs_chunks_gets_it_Known_only_and_the_rest_as_stored()
    {
        using var dir = new TempDir();
        var path = dir.File("random.img");
        var image = RandomNumberGenerator.GetBytes(128 * ChunkSize);
        await File.WriteAllBytesAsync(path, image, Ct);
        await using var input = ImageFileInput.Open([(path, ObjectKind.Memory)], ChunkSize, "filtered");
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default);

        using var peer = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
        await peer.SendHelloAsync("holds-first-batch", ct: Ct);
        await peer.ReadHeaderAsync<HelloMessage>(FrameType.Hello, Ct);
        await peer.ReadHeaderAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, Ct);
        // The sink holds the first batch's 64 chunks (from another snapshot, say).
        var held = new byte[64 * ChunkHash.Size];
        for (var i = 0; i < 64; i++)
        {
            ChunkHash.Compute(image.AsSpan(i * ChunkSize, ChunkSize)).Write(held.AsSpan(i * ChunkHash.Size));
        }
        await peer.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 64, Last = true }, held, Ct);

        var first = await peer.ReceiveAsync(Ct) ?? throw new EndOfStreamException();
        var firstHeader = first.DecodeHeader<ChunkBatchMessage>();
        Assert.Equal(FrameType.ChunkBatch, first.Type);
        Assert.Equal(1, firstHeader.Sequence);
        Assert.All(firstHeader.Kinds, k => Assert.Equal((byte)ChunkEntryKind.Known, k));
        Assert.Equal(0, firstHeader.RawLength);
        Assert.Equal(0, first.Payload.Length);

        var second = await peer.ReceiveAsync(Ct) ?? throw new EndOfStreamException();
        var secondHeader = second.DecodeHeader<ChunkBatchMessage>();
        Assert.Equal(2, secondHeader.Sequence);
        Assert.All(secondHeader.Kinds, k => Assert.Equal((byte)ChunkEntryKind.Data, k));
        // As stored: the same bytes every other reader of the stream gets.
        using var stored = await source.Server.Stream.ReadAsync(2, Ct);
        Assert.Equal(stored!.Payload.Span.ToArray(), second.Payload.ToArray());
        await peer.ReceiveAsync<SnapshotCompleteMessage>(FrameType.SnapshotComplete, Ct);
    }

    [Fact]
    public async Task A_frame_on_the_bulk_lane_while_streaming_is_an_unexpected_frame_and_others_are_served()
    {
        using var dir = new TempDir();
        var image = await MixedImageAsync(dir, 512);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], ChunkSize, "control-frames");
        await using var source = new InProcessSource(input, new SourceOptions(), TransportOptions.Default);

        using var peer = await RawFramePeer.ConnectAsync(source.EndPoint, Ct);
        await peer.SendHelloAsync("chatty", ct: Ct);
        await peer.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 0, Last = true }, ct: Ct);
        await peer.SendAsync(FrameType.MulticastReport, new InventoryMessage { Count = 0, Last = true }, ct: Ct);
        var error = await peer.ReadErrorAsync(Ct);
        Assert.NotNull(error);
        Assert.Equal(ProtocolError.UnexpectedFrame, error.Code);
        Assert.Contains("unexpected MulticastReport while streaming", error.Message, StringComparison.Ordinal);

        await PullAndCompareAsync(source.EndPoint, dir, image, "after");
    }
}
