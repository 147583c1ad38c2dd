using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Perf.Faults;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using StreamClone.Tests.Integration.Infrastructure;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// The demand lane against hostile sinks, honest large reads, a lane that dies under a waiting read,
/// and a local copy that turns out damaged. The sink's bulk loop is not run in the read tests, so
/// every byte a read returns came over the demand lane.
/// </summary>
public class DemandLaneTests
{
    /// <summary>FirstIndex + Count wraps past long.MaxValue; times 4096 it once became offset -65536.</summary>
    private const long WrappingFirst = long.MaxValue - 15;

    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task A_wrapping_demand_range_gets_an_error_frame_one_log_line_and_the_source_serves_on()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 61);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "wrap-test");
        var log = new CapturingLogger();
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, log);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using var stop = new CancellationTokenSource(Guard);
        var serving = server.RunAsync(stop.Token);

        var session = "hostile-sink";
        await using (var bulk = await RawFramePeer.ConnectAsync(endPoint, stop.Token))
        {
            await bulk.SendAsync(FrameType.Hello, new HelloMessage { Role = "sink", Lane = Lane.Bulk, SessionId = session }, stop.Token);
            await bulk.ReceiveAsync<HelloMessage>(FrameType.Hello, stop.Token);
            await bulk.ReceiveAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, stop.Token);
            await bulk.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 0, Last = true }, stop.Token);

            await using var demand = await RawFramePeer.ConnectAsync(endPoint, stop.Token);
            await demand.SendAsync(FrameType.Hello, new HelloMessage { Role = "sink", Lane = Lane.Demand, SessionId = session }, stop.Token);
            await demand.ReceiveAsync<HelloMessage>(FrameType.Hello, stop.Token);
            await demand.SendAsync(FrameType.DemandRequest,
                new DemandRequestMessage { RequestId = 7, ObjectId = 0, FirstIndex = WrappingFirst, Count = 16 }, stop.Token);
            var refused = await Assert.ThrowsAsync<ProtocolViolationException>(() => demand.ReceiveAsync<ChunkBatchMessage>(FrameType.ChunkBatch, stop.Token));
            Assert.Equal(ProtocolError.BadChunkPlacement, refused.Code);
            Assert.Contains(WrappingFirst.ToString(System.Globalization.CultureInfo.InvariantCulture), refused.Message);
        }

        // One line an operator sees (Information and up) about the request, without a stack trace;
        // the connection's close reason repeats it at Debug.
        var about = log.Lines.Where(l => l.Level >= LogLevel.Information && l.Message.Contains(WrappingFirst.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToList();
        var line = Assert.Single(about);
        Assert.Equal(LogLevel.Error, line.Level);
        Assert.Null(line.Exception);
        Assert.DoesNotContain('\n', line.Message);

        // A real sink still gets an identical copy.
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using var sink = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token);
        await sink.RunAsync();
        Assert.Equal(await File.ReadAllBytesAsync(image, stop.Token), await File.ReadAllBytesAsync(sink.Snapshot.GetObjectPath(0), stop.Token));

        await stop.CancelAsync();
        await serving;
    }

    /// <summary>
    /// Reads as large as a guest's: each spans more chunks or bytes than one demand answer may carry,
    /// so the sink must split it (the expected request count is the split) and the source must answer each part.
    /// </summary>
    [Theory]
    [InlineData(4096, 16L << 20, (4L << 20) + 100, 8 << 20, 3)]              // 2049 chunks: 1024 + 1024 + 1
    [InlineData(64 << 10, 32L << 20, (8L << 20) + 100, 16 << 20, 5)]         // 257 chunks of 64 KiB: 64 per request
    [InlineData(4 << 20, 512L << 22, (4L << 20) - 1, (509 << 22) + 2, 511)]  // 511 chunks of 4 MiB: one per request
    public async Task Large_honest_reads_are_split_into_requests_the_source_accepts_and_return_the_right_bytes(
        int chunkSize, long imageSize, long offset, int length, int expectedRequests)
    {
        using var dir = new TempDir();
        var image = await SparseImageAsync(dir, imageSize, chunkSize);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], chunkSize, "honest-read");
        var options = new SourceOptions { ChunkSize = chunkSize, BatchChunks = Math.Min(64, WireLimits.MaxBatchRawBytes / chunkSize) };
        await using var server = new SourceServer(input, options, TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using var stop = new CancellationTokenSource(Guard);
        var serving = server.RunAsync(stop.Token);
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using (var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token))
        {
            var destination = GC.AllocateUninitializedArray<byte>(length);
            Assert.Equal(length, await session.ReadAsync(0, offset, destination, stop.Token));
            await AssertSameAsImageAsync(image, offset, destination, chunkSize);
            Assert.Equal(expectedRequests, Assert.Single(server.ActiveSessions).Stats.DemandRequests);
        }
        await stop.CancelAsync();
        await serving;
    }

    [Fact]
    public async Task A_read_waiting_on_the_demand_lane_fails_promptly_when_the_lane_dies()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 62);
        await using var files = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "lane-dies");
        // Bulk reads are whole batches (256 KiB); a one-chunk read is a demand answer, held until the test ends.
        var input = new HeldDemandInput(files, 4096);
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using var stop = new CancellationTokenSource(Guard);
        var serving = server.RunAsync(stop.Token);
        await using var proxy = new FaultProxy(endPoint);
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using var session = await UpstreamSession.ConnectAsync(proxy.EndPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token);

        var read = session.ReadAsync(0, 5 << 20, new byte[4096], stop.Token).AsTask();
        await input.DemandReadStarted.WaitAsync(stop.Token);
        Assert.False(read.IsCompleted);
        // Cuts both lanes; the bulk loop is not running, so only the demand lane's reader can notice.
        proxy.CutAll();

        var failure = await Assert.ThrowsAsync<IOException>(() => read.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("demand lane closed", failure.Message);
        // A read registered after the lane died fails too, instead of waiting for an answer that cannot come.
        var late = await Record.ExceptionAsync(() => session.ReadAsync(0, 6 << 20, new byte[4096], stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.NotNull(late);
        Assert.IsNotType<TimeoutException>(late);

        await stop.CancelAsync();
        await serving;
    }

    [Fact]
    public async Task A_known_chunk_whose_stored_copy_is_damaged_is_fetched_again_with_its_data()
    {
        using var dir = new TempDir();
        const int chunk = 4096;
        // Random bytes: every chunk is unique, so each hash has exactly one stored copy to damage.
        var image = dir.File("mem.img");
        var bytes = new byte[4 << 20];
        new Random(63).NextBytes(bytes);
        await File.WriteAllBytesAsync(image, bytes);
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        using var stop = new CancellationTokenSource(Guard);

        string firstCopy;
        await using (var first = ImageFileInput.Open([(image, ObjectKind.Memory)], chunk, "first"))
        await using (var server = new SourceServer(first, new SourceOptions(), TransportOptions.Default, NullLogger.Instance))
        {
            using var firstStop = CancellationTokenSource.CreateLinkedTokenSource(stop.Token);
            var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
            var serving = server.RunAsync(firstStop.Token);
            await using (var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token))
            {
                await session.RunAsync();
                firstCopy = session.Snapshot.GetObjectPath(0);
            }
            await firstStop.CancelAsync();
            await serving;
        }

        const long damaged = 300, intact = 301;
        await using (var file = new FileStream(firstCopy, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = (damaged * chunk) + 17;
            file.WriteByte((byte)(bytes[(damaged * chunk) + 17] ^ 0xFF));
        }

        // The same bytes as a new snapshot: the sink's inventory lists every hash, so the source answers "known".
        await using var second = ImageFileInput.Open([(image, ObjectKind.Memory)], chunk, "second");
        await using var secondServer = new SourceServer(second, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var secondEndPoint = secondServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        var secondServing = secondServer.RunAsync(stop.Token);
        await using (var session = await UpstreamSession.ConnectAsync(secondEndPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token))
        {
            var source = Assert.Single(secondServer.ActiveSessions);
            var buffer = new byte[chunk];

            Assert.Equal(chunk, await session.ReadAsync(0, intact * chunk, buffer, stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.True(buffer.AsSpan().SequenceEqual(bytes.AsSpan((int)(intact * chunk), chunk)));
            Assert.Equal(1, source.Stats.DemandRequests);

            Assert.Equal(chunk, await session.ReadAsync(0, damaged * chunk, buffer, stop.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.True(buffer.AsSpan().SequenceEqual(bytes.AsSpan((int)(damaged * chunk), chunk)), "the read returned the damaged copy");
            // The request, then the re-fetch with ForceData after the local copy failed its hash.
            Assert.Equal(3, source.Stats.DemandRequests);
        }
        await stop.CancelAsync();
        await secondServing;
    }

    /// <summary>
    /// A sparse image: zero except 64 KiB of seeded random bytes at the start of every eighth chunk
    /// and around the test reads' ends, so a 2 GiB image costs little disk and every answer mixes
    /// data and zero chunks.
    /// </summary>
    private static async Task<string> SparseImageAsync(TempDir dir, long size, int chunkSize)
    {
        var path = dir.File("sparse.img");
        var random = new Random(64);
        var block = new byte[64 << 10];
        await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        file.SetLength(size);
        for (long at = 0; at < size; at += 8L * chunkSize)
        {
            random.NextBytes(block);
            await RandomAccess.WriteAsync(file.SafeFileHandle, block.AsMemory(0, (int)Math.Min(block.Length, size - at)), at);
        }
        for (long at = Math.Max(0, chunkSize - (block.Length / 2)); at < size; at += 3L * chunkSize)
        {
            random.NextBytes(block);
            await RandomAccess.WriteAsync(file.SafeFileHandle, block.AsMemory(0, (int)Math.Min(block.Length, size - at)), at);
        }
        return path;
    }

    private static async Task AssertSameAsImageAsync(string image, long offset, byte[] actual, int chunkSize)
    {
        using var handle = File.OpenHandle(image);
        var expected = new byte[chunkSize];
        for (var at = 0; at < actual.Length; at += chunkSize)
        {
            var length = Math.Min(chunkSize, actual.Length - at);
            Assert.Equal(length, await RandomAccess.ReadAsync(handle, expected.AsMemory(0, length), offset + at));
            Assert.True(expected.AsSpan(0, length).SequenceEqual(actual.AsSpan(at, length)), $"bytes at {offset + at} differ");
        }
    }

    /// <summary>Serves an image, but holds every read of exactly <c>heldLength</c> bytes (a one-chunk demand answer) until cancelled.</summary>
    private sealed class HeldDemandInput(ISnapshotInput inner, int heldLength) : ISnapshotInput
    {
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task DemandReadStarted => _started.Task;

        public SnapshotOfferMessage Offer => inner.Offer;

        public async ValueTask<int> ReadAsync(int objectId, long offset, Memory<byte> destination, CancellationToken ct)
        {
            if (destination.Length == heldLength)
            {
                _started.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
            }
            return await inner.ReadAsync(objectId, offset, destination, ct);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
