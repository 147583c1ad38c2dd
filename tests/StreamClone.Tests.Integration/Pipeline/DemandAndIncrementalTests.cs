using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Perf;
using StreamClone.Perf.Faults;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

public class DemandAndIncrementalTests
{
    [Fact]
    public async Task Demand_reads_return_the_right_bytes_before_the_bulk_stream_reaches_them()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 32 << 20, seed: 11);
        var expected = await File.ReadAllBytesAsync(image);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "demand-test");
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var serving = server.RunAsync(stop.Token);
        // The bulk lane crawls (1 MB/s), so the end of the image is far ahead of it for the whole test.
        await using var proxy = new FaultProxy(endPoint) { BytesPerSecond = 1 << 20 };
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using var session = await UpstreamSession.ConnectAsync(proxy.EndPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token);
        var bulk = session.RunAsync();

        long[] offsets = [(31L << 20) + 123, (30L << 20) - 4000, (28L << 20) + 8192, (32L << 20) - 100];
        foreach (var offset in offsets)
        {
            Assert.False(session.Snapshot.IsPresent(0, offset / 4096), "the bulk stream must not have reached this chunk yet");
            var buffer = new byte[6000];
            var read = await session.ReadAsync(0, offset, buffer, stop.Token);
            Assert.Equal((int)Math.Min(buffer.Length, expected.Length - offset), read);
            Assert.True(buffer.AsSpan(0, read).SequenceEqual(expected.AsSpan((int)offset, read)), $"bytes at {offset} differ");
        }

        // Ten readers of one missing chunk share one request.
        var sourceSession = Assert.Single(server.ActiveSessions);
        var before = sourceSession.Stats.DemandRequests;
        const long shared = (29L << 20) + 4096;
        Assert.False(session.Snapshot.IsPresent(0, shared / 4096));
        var reads = Enumerable.Range(0, 10).Select(_ => session.ReadAsync(0, shared, new byte[4096], stop.Token).AsTask()).ToArray();
        await Task.WhenAll(reads);
        Assert.Equal(before + 1, sourceSession.Stats.DemandRequests);
        Assert.True(session.Stats.DemandAnswers >= offsets.Length);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => bulk);
        await serving;
    }

    [Fact]
    public async Task A_second_snapshot_of_a_changed_image_crosses_the_wire_as_its_changed_chunks()
    {
        using var dir = new TempDir();
        var first = await TestImages.MemoryAsync(dir, "mem.img", 64 << 20, seed: 21);
        var second = dir.File("mem-changed.img");
        await ImageMutator.MutateAsync(first, second, 5.0, seed: 22);
        var store = dir.File("store");

        var firstWire = await TransferAsync(dir, first, store);
        var secondWire = await TransferAsync(dir, second, store);

        // 5% of pages rewritten with new content of the same kinds: at most 7% of the first wire.
        Assert.True(secondWire <= firstWire * 0.07, $"second snapshot sent {secondWire} bytes, the first {firstWire}");
    }

    private static async Task<long> TransferAsync(TempDir dir, string image, string store)
    {
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using var _ = source;
        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json");
        Assert.True(await sink.WaitAsync(TimeSpan.FromMinutes(3)) == 0, sink.Stderr);
        using var summary = JsonDocument.Parse(sink.LastLine);
        var copy = summary.RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;
        Assert.True(await FileCompare.SameContentAsync(image, copy, CancellationToken.None), "copy differs");
        Assert.Equal(0, await source.WaitAsync(TimeSpan.FromMinutes(1)));
        return summary.RootElement.GetProperty("wire_bytes").GetInt64();
    }
}
