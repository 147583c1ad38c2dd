using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using StreamClone.Shared.Protocol;
using StreamClone.Source;
using StreamClone.Source.Live;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Unit.Live;

/// <summary>
/// The live source's lifecycle policy (<see cref="LiveSource"/>) below the process, without QEMU: what a start
/// that cannot reach a VM leaves behind, and what a snapshot failing while sinks are served does to the server.
/// The same policy against a real guest is in the integration tests (LiveSourceLifecycleTests).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class LiveSourceTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("sc-live-source-test-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task A_missing_qmp_socket_is_named_before_a_work_dir_is_made()
    {
        var socket = Path.Combine(_root, "missing.sock");
        var work = Path.Combine(_root, "work");
        var error = await Assert.ThrowsAsync<FileNotFoundException>(() =>
            LiveSource.StartAsync(new LiveSourceSettings { QmpSocketPath = socket, SnapshotId = "s", WorkDirectory = work }, NullLogger.Instance, Ct));
        Assert.Contains(socket, error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(work));
    }

    [Fact]
    public async Task An_invalid_snapshot_id_or_chunk_size_is_refused_before_the_socket_is_touched()
    {
        var socket = Path.Combine(_root, "missing.sock");
        await Assert.ThrowsAsync<ArgumentException>(() =>
            LiveSource.StartAsync(new LiveSourceSettings { QmpSocketPath = socket, SnapshotId = "../x" }, NullLogger.Instance, Ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            LiveSource.StartAsync(new LiveSourceSettings { QmpSocketPath = socket, SnapshotId = "s", ChunkSize = WireLimits.MaxChunkSize + WireLimits.PageSize }, NullLogger.Instance, Ct));
    }

    [Fact]
    public async Task A_socket_that_is_not_qemu_fails_the_start_removes_the_work_dir_made_for_it_and_keeps_a_given_one()
    {
        var socket = Path.Combine(_root, "not-qemu.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socket));
        listener.Listen(4);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var peer = HangUpOnEveryClientAsync(listener, stop.Token);

        // Missing before: made for this source (0700), so removed with it.
        var made = Path.Combine(_root, "made");
        var error = await Assert.ThrowsAnyAsync<Exception>(() =>
            LiveSource.StartAsync(new LiveSourceSettings { QmpSocketPath = socket, SnapshotId = "s", WorkDirectory = made }, NullLogger.Instance, Ct));
        Assert.Contains(socket, error.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(made), "the work dir made for a source that never started stays behind");

        // Ours and private before: the user's, so kept with what they put there.
        var given = Directory.CreateDirectory(Path.Combine(_root, "given"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute).FullName;
        await File.WriteAllTextAsync(Path.Combine(given, "mine"), "keep", Ct);
        await Assert.ThrowsAnyAsync<Exception>(() =>
            LiveSource.StartAsync(new LiveSourceSettings { QmpSocketPath = socket, SnapshotId = "s", WorkDirectory = given }, NullLogger.Instance, Ct));
        Assert.True(File.Exists(Path.Combine(given, "mine")));

        await stop.CancelAsync();
        await peer;
    }

    private static async Task HangUpOnEveryClientAsync(Socket listener, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                using var client = await listener.AcceptAsync(ct);
                client.Shutdown(SocketShutdown.Both);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    [Fact]
    public async Task A_snapshot_that_fails_while_served_stops_the_server_as_soon_as_its_session_told_the_sink_and_serving_ends_with_the_error()
    {
        var (input, pipe, receive) = await StartInputAsync("failing", half: true);
        await using var _ = input;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        // A grace far longer than the test may take: the session's end, not the grace, must release the stop.
        var serving = LiveSource.ServeAsync(server, receive, stop, TimeSpan.FromMinutes(5));
        using var store = ChunkStore.Open(Path.Combine(_root, "store"), NullLogger.Instance);
        await using var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, Ct);
        var bulk = session.RunAsync();
        // The sink stored part of the snapshot: its bulk pass now waits for pages that will never come.
        var clock = Stopwatch.StartNew();
        while (!session.Snapshot.IsPresent(0, 0))
        {
            Assert.False(bulk.IsCompleted, "the sink ended before the stream broke");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "the sink stored nothing");
            await Task.Delay(10, Ct);
        }

        await pipe.Writer.CompleteAsync();
        clock.Restart();
        var error = await Assert.ThrowsAsync<LiveSnapshotException>(() => serving.WaitAsync(TimeSpan.FromMinutes(1), Ct));
        Assert.Contains("cut short", error.Message, StringComparison.Ordinal);
        Assert.True(stop.IsCancellationRequested, "the failed snapshot must stop the server");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"serving ended {clock.Elapsed} after the failure: it waited for the grace, not for the session");
        Assert.Empty(server.ActiveSessions);

        // The sink was told why before the server stopped.
        var told = await Assert.ThrowsAsync<StreamClone.Shared.Protocol.ProtocolViolationException>(() => bulk.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        Assert.Equal(ProtocolError.PeerError, told.Code);
        Assert.Contains("IncompleteSnapshot", told.Message, StringComparison.Ordinal);
        Assert.False(session.Snapshot.IsComplete);
    }

    [Fact]
    public async Task A_snapshot_that_completes_is_served_until_stopped_and_serving_ends_without_error()
    {
        var (input, pipe, receive) = await StartInputAsync("complete", half: false);
        await using var _ = input;
        await pipe.Writer.CompleteAsync();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        var serving = LiveSource.ServeAsync(server, receive, stop, TimeSpan.FromMinutes(5));
        using var store = ChunkStore.Open(Path.Combine(_root, "store"), NullLogger.Instance);
        await using (var session = await UpstreamSession.ConnectAsync(endPoint, store, new UpstreamOptions(), TransportOptions.Default, NullLogger.Instance, Ct))
        {
            await session.RunAsync().WaitAsync(TimeSpan.FromMinutes(1), Ct);
            Assert.True(session.Snapshot.IsComplete);
        }
        Assert.False(serving.IsCompleted, "a complete snapshot is served until the source is stopped");
        Assert.False(stop.IsCancellationRequested);

        await stop.CancelAsync();
        await serving.WaitAsync(TimeSpan.FromSeconds(30), Ct);
    }

    /// <summary>A live input fed a migration stream of one 4 MiB RAM block (all of it, or the first half with the writer left open).</summary>
    private async Task<(LiveSnapshotInput Input, Pipe Pipe, Task Receive)> StartInputAsync(string id, bool half)
    {
        var stream = await MigrationStreamAsync(4 << 20);
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
        var input = new LiveSnapshotInput(Path.Combine(_root, "ram"), [], WireLimits.PageSize, id);
        var receive = input.ReceiveAsync(pipe.Reader, Ct);
        await pipe.Writer.WriteAsync(half ? stream.AsMemory(0, stream.Length / 2) : stream, Ct);
        await input.OfferReady.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        return (input, pipe, receive);
    }

    /// <summary>A migration stream as QEMU sends one (QemuStreamWriter writes the same format): one RAM block of pattern pages.</summary>
    private static async Task<byte[]> MigrationStreamAsync(long ramBytes)
    {
        var preamble = new byte[8];
        "QEVM"u8.CopyTo(preamble);
        BinaryPrimitives.WriteUInt32BigEndian(preamble.AsSpan(4), 3);
        // EOF, then a vmdesc: the end of a complete stream.
        byte[] region = [0x00, 0x06, 0, 0, 0, 2, (byte)'{', (byte)'}'];
        var blob = new DeviceStateBlob(preamble, 2, "ram", 0, 4, 4096, [new RamBlockInfo("pc.ram", ramBytes)], region);
        using var output = new MemoryStream();
        await QemuStreamWriter.WriteAsync(blob, new PatternRam(), output, null, Ct);
        return output.ToArray();
    }

    private sealed class PatternRam : IRamSource
    {
        public ValueTask<bool> TryReadPageAsync(int blockIndex, long offset, Memory<byte> destination, CancellationToken ct)
        {
            destination.Span[..4096].Fill((byte)(1 + (offset / 4096 % 251)));
            return ValueTask.FromResult(true);
        }
    }
}
