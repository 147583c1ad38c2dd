using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>Peers that speak the wrong thing get a clear error frame and lose only their own connection.</summary>
public class HostilePeerTests
{
    private static async Task<ErrorMessage?> SendRawAsync(IPEndPoint server, byte[] bytes)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(server);
        await socket.SendAsync(bytes);
        var received = new ArrayBufferWriter<byte>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (true)
        {
            var memory = received.GetMemory(4096);
            var n = await socket.ReceiveAsync(memory, SocketFlags.None, timeout.Token);
            if (n == 0)
            {
                break;
            }
            received.Advance(n);
        }
        var sequence = new ReadOnlySequence<byte>(received.WrittenMemory);
        var reader = new FrameReader(TransportOptions.Default);
        while (reader.TryRead(ref sequence, out var frame))
        {
            if (frame.Type == FrameType.Error)
            {
                return frame.DecodeHeader<ErrorMessage>();
            }
        }
        return null;
    }

    private static byte[] Frame<T>(FrameType type, T header)
    {
        var output = new ArrayBufferWriter<byte>();
        new FrameWriter().Write(output, type, header, []);
        return output.WrittenSpan.ToArray();
    }

    [Fact]
    public async Task Unknown_versions_garbage_and_stray_demand_lanes_are_refused_and_the_source_serves_on()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 5);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "hostile-test");
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var serving = server.RunAsync(stop.Token);

        var future = await SendRawAsync(endPoint, Frame(FrameType.Hello, new HelloMessage { ProtocolVersion = 99, Role = "sink", SessionId = "x" }));
        Assert.Equal(ProtocolError.UnsupportedVersion, future?.Code);

        var garbage = await SendRawAsync(endPoint, "GET / HTTP/1.1\r\nHost: source\r\n\r\n"u8.ToArray());
        Assert.Equal(ProtocolError.BadMagic, garbage?.Code);

        var stray = await SendRawAsync(endPoint, Frame(FrameType.Hello, new HelloMessage { Role = "sink", Lane = Lane.Demand, SessionId = "nobody" }));
        Assert.Equal(ProtocolError.UnknownSession, stray?.Code);

        // After all that, a real sink still gets an identical copy.
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token);
        await session.RunAsync();
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(session.Snapshot.GetObjectPath(0)));

        await stop.CancelAsync();
        await serving;
    }

    [Fact]
    public async Task A_source_whose_chunk_bytes_do_not_match_their_hash_ends_the_sink_with_one_line_and_the_store_holds_none_of_them()
    {
        using var dir = new TempDir();
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(2);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));

        // Chunk 0 is what the frame says; chunk 1 carries other bytes under chunk 1's announced hash. The frame's CRC
        // covers what is sent, so only the sink's per-chunk BLAKE3 check can tell.
        var genuine = Pattern("GENUINE-CHUNK-0:");
        var announced = Pattern("ANNOUNCED-CHUNK1");
        var sent = Pattern("UNVERIFIED-BYTES");
        var lying = LyingSourceAsync(listener, genuine, announced, sent, stop.Token);

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--insecure");
        var exit = await sink.WaitAsync(TimeSpan.FromSeconds(60));
        var refusal = await lying;

        Assert.True(exit == 1, $"exit {exit}:\n{sink.Stderr}");
        var error = Assert.Single(sink.FailureLines);
        Assert.True(error.Contains("chunk 1", StringComparison.Ordinal) && error.Contains("hashes to", StringComparison.Ordinal), sink.Stderr);
        Assert.DoesNotContain(" at StreamClone.", sink.Stderr, StringComparison.Ordinal);
        Assert.Equal(ProtocolError.HashMismatch, refusal?.Code);

        // Checked in the store itself: neither chunk of the refused batch is present, and the lying bytes are in no file.
        using (var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance))
        {
            var snapshot = store.GetSnapshot(LyingSnapshotId);
            Assert.NotNull(snapshot);
            Assert.False(snapshot.IsPresent(0, 1));
            Assert.False(snapshot.IsPresent(0, 0));
            Assert.Equal(0, snapshot.PresentChunks);
        }
        foreach (var file in Directory.EnumerateFiles(dir.File("store"), "*", SearchOption.AllDirectories))
        {
            var bytes = await File.ReadAllBytesAsync(file);
            Assert.True(bytes.AsSpan().IndexOf(sent.AsSpan(0, 16)) < 0, $"{file} holds bytes that failed verification");
            Assert.True(bytes.AsSpan().IndexOf(genuine.AsSpan(0, 16)) < 0, $"{file} holds a chunk of a refused batch");
        }
    }

    private const string LyingSnapshotId = "lying-source";

    private static byte[] Pattern(string text) =>
        [.. Enumerable.Repeat(System.Text.Encoding.ASCII.GetBytes(text), WireLimits.PageSize / text.Length).SelectMany(b => b)];

    /// <summary>
    /// A source that follows the protocol (hello, offer, inventory, demand lane) and then sends one batch whose frame is
    /// well formed and whose second chunk's bytes are not the ones its hash names. Returns the error the sink sent back.
    /// </summary>
    private static async Task<ErrorMessage?> LyingSourceAsync(Socket listener, byte[] genuine, byte[] announced, byte[] sent, CancellationToken ct)
    {
        using var bulk = new RawFramePeer(await listener.AcceptAsync(ct));
        var hello = await bulk.ReceiveAsync<HelloMessage>(FrameType.Hello, ct);
        await bulk.SendAsync(FrameType.Hello, new HelloMessage { Role = "source", SessionId = hello.SessionId }, ReadOnlyMemory<byte>.Empty, ct);
        await bulk.SendAsync(FrameType.SnapshotOffer, new SnapshotOfferMessage
        {
            SnapshotId = LyingSnapshotId,
            CreatedUtc = DateTime.UtcNow,
            Origin = "hostile-test",
            Objects = [new ObjectInfo { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = 2 * WireLimits.PageSize, ChunkSize = WireLimits.PageSize }],
        }, ReadOnlyMemory<byte>.Empty, ct);
        while (!(await bulk.ReceiveAsync<InventoryMessage>(FrameType.Inventory, ct)).Last)
        {
        }
        using var demand = new RawFramePeer(await listener.AcceptAsync(ct));
        await demand.ReceiveAsync<HelloMessage>(FrameType.Hello, ct);
        await demand.SendAsync(FrameType.Hello, new HelloMessage { Role = "source", Lane = Lane.Demand, SessionId = hello.SessionId }, ReadOnlyMemory<byte>.Empty, ct);

        var hashes = new byte[2 * ChunkHash.Size];
        ChunkHash.Compute(genuine).Write(hashes);
        ChunkHash.Compute(announced).Write(hashes.AsSpan(ChunkHash.Size));
        await bulk.SendAsync(FrameType.ChunkBatch, new ChunkBatchMessage
        {
            Sequence = 1,
            ObjectId = 0,
            FirstIndex = 0,
            Kinds = [(byte)ChunkEntryKind.Data, (byte)ChunkEntryKind.Data],
            Hashes = hashes,
            Codec = PayloadCodec.None,
            RawLength = 2 * WireLimits.PageSize,
        }, (byte[])[.. genuine, .. sent], ct);
        // The whole object is sent, so the snapshot completes (root = BLAKE3 over the announced hashes) unless the sink
        // checks each chunk's bytes: without that check this source would deliver a "verified" snapshot holding `sent`.
        await bulk.SendAsync(FrameType.SnapshotComplete, new SnapshotCompleteMessage
        {
            RootHashes = [ChunkHash.Compute(hashes).ToArray()],
            ChunksSent = 2,
        }, ReadOnlyMemory<byte>.Empty, ct);

        while (await bulk.ReceiveAsync(ct) is { } frame)
        {
            if (frame.Type == FrameType.Error)
            {
                return frame.DecodeHeader<ErrorMessage>();
            }
        }
        return null;
    }
}
