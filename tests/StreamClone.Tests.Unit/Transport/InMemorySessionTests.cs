using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Tests.Unit.Transport;

/// <summary>
/// The session handshake, lane pairing and failure policy over an in-memory pipe pair: the real frame
/// layer and the real code of every role, without a socket.
/// </summary>
public class InMemorySessionTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static (FrameConnection Client, FrameConnection Server) Pair(Lane lane = Lane.Bulk, TransportOptions? options = null) =>
        FrameConnection.CreateInMemoryPair(lane, options ?? TransportOptions.Default, NullLogger.Instance);

    [Fact]
    public async Task The_handshake_pairs_role_lane_and_session_and_names_an_unauthenticated_peer_as_unverified()
    {
        var (client, server) = Pair(Lane.Demand);
        await using var _ = client;
        await using var __ = server;

        var serving = SessionHandshake.ServerAsync(server, NodeRoles.Source, "src-host", tls: null, admit: null, Ct);
        var asClient = await SessionHandshake.ClientAsync(client, NodeRoles.Sink, Lane.Demand, "session-1", "sink-host", tls: null, Ct);
        var asServer = await serving;

        Assert.Equal(new HandshakeResult(NodeRoles.Sink, Lane.Demand, "session-1", new PeerIdentity("sink-host", false, "memory:client")), asServer);
        Assert.Equal(new HandshakeResult(NodeRoles.Source, Lane.Demand, "session-1", new PeerIdentity("src-host", false, "memory:server")), asClient);
        // The server learnt the lane from the Hello: the demand lane has no idle limit.
        Assert.Equal(Lane.Demand, server.Lane);
        Assert.Equal(Timeout.InfiniteTimeSpan, server.ReceiveIdleTimeout);
        Assert.Equal("\"sink-host\" (unverified, memory:client)", server.Peer!.ToString());
    }

    [Fact]
    public async Task A_hostile_self_declared_name_is_not_written_into_logs()
    {
        var (client, server) = Pair();
        await using var _ = client;
        await using var __ = server;

        var serving = SessionHandshake.ServerAsync(server, NodeRoles.Source, "src", null, null, Ct);
        await SessionHandshake.ClientAsync(client, NodeRoles.Sink, Lane.Bulk, "s-2", "evil\nname\u001b[31m", null, Ct);

        Assert.Equal("?", (await serving).Peer.Name);
    }

    [Fact]
    public async Task A_version_mismatch_gets_an_error_frame_and_both_sides_record_a_typed_reason()
    {
        var (client, server) = Pair();
        await using var _ = client;
        await using var __ = server;

        var serving = SessionHandshake.ServerAsync(server, NodeRoles.Source, "src", null, null, Ct);
        await client.SendAsync(FrameType.Hello, new HelloMessage { ProtocolVersion = 99, Role = NodeRoles.Sink, SessionId = "s-3" }, ReadOnlyMemory<byte>.Empty, Ct);
        var thrown = await Assert.ThrowsAsync<ProtocolViolationException>(() => serving);
        var serverReason = await SessionFailure.CloseAsync(server, thrown);

        Assert.Equal(CloseKind.Protocol, serverReason.Kind);
        Assert.Equal(ProtocolError.UnsupportedVersion, serverReason.Code);
        Assert.Contains("protocol version 99", serverReason.Detail, StringComparison.Ordinal);

        var peerError = await Assert.ThrowsAsync<ProtocolViolationException>(() => client.ReceiveOneAsync<HelloMessage>(FrameType.Hello, Ct));
        Assert.Equal(ProtocolError.PeerError, peerError.Code);
        Assert.Equal(CloseKind.PeerError, client.CloseReason!.Kind);
        Assert.Equal(ProtocolError.UnsupportedVersion, client.CloseReason.Code);
        Assert.Contains("protocol version 99", client.CloseReason.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_server_that_answers_for_another_session_is_refused_by_the_client()
    {
        var (client, server) = Pair();
        await using var _ = client;
        await using var __ = server;

        var asClient = SessionHandshake.ClientAsync(client, NodeRoles.Sink, Lane.Bulk, "mine", "sink", null, Ct);
        await server.ReceiveOneAsync<HelloMessage>(FrameType.Hello, Ct);
        await server.SendAsync(FrameType.Hello, new HelloMessage { Role = NodeRoles.Source, Lane = Lane.Bulk, SessionId = "someone-else" }, ReadOnlyMemory<byte>.Empty, Ct);

        var refused = await Assert.ThrowsAsync<ProtocolViolationException>(() => asClient);
        Assert.Equal(ProtocolError.UnknownSession, refused.Code);
    }

    [Fact]
    public async Task A_silent_peer_times_out_the_handshake_without_a_frame()
    {
        var options = TransportOptions.Default with { HandshakeTimeout = TimeSpan.FromMilliseconds(200) };
        var (client, server) = Pair(options: options);
        await using var _ = client;
        await using var __ = server;

        var thrown = await Assert.ThrowsAsync<TimeoutException>(() => SessionHandshake.ServerAsync(server, NodeRoles.Source, "src", null, null, Ct));
        var reason = await SessionFailure.CloseAsync(server, thrown);

        Assert.Equal(CloseKind.Timeout, reason.Kind);
        Assert.False(reason.TellsPeer);
        // The client sees the end of the stream, no Error frame.
        var ended = await Assert.ThrowsAsync<EndOfStreamException>(() => client.ReceiveOneAsync<HelloMessage>(FrameType.Hello, Ct));
        Assert.Contains("after frame #0", ended.Message, StringComparison.Ordinal);
        Assert.Equal(CloseKind.PeerClosed, client.CloseReason!.Kind);
    }

    [Fact]
    public async Task A_node_limit_refuses_in_the_handshake_with_its_code()
    {
        var (client, server) = Pair();
        await using var _ = client;
        await using var __ = server;

        var serving = SessionHandshake.ServerAsync(server, NodeRoles.Source, "src", null,
            _ => CloseReason.Refused("full", ProtocolError.TooManySessions), Ct);
        var asClient = SessionHandshake.ClientAsync(client, NodeRoles.Sink, Lane.Bulk, "s-4", "sink", null, Ct);
        var refused = await Assert.ThrowsAsync<HandshakeRefusedException>(() => serving);
        Assert.Equal(CloseKind.Refused, (await SessionFailure.CloseAsync(server, refused)).Kind);

        await Assert.ThrowsAsync<ProtocolViolationException>(() => asClient);
        Assert.Equal(new CloseReason(CloseKind.PeerError, client.CloseReason!.Detail, ProtocolError.TooManySessions), client.CloseReason);
    }

    [Fact]
    public void A_demand_lane_joins_its_bulk_session_once_and_only_its_own()
    {
        var pairing = new LanePairing<string>();
        var sink = new PeerIdentity("sink-a", true, "10.0.0.1:1");
        Assert.True(pairing.TryOpen("s-5", sink, "session s-5"));
        Assert.False(pairing.TryOpen("s-5", sink, "again"));

        Assert.Null(pairing.TryJoin("s-5", new PeerIdentity("sink-b", true, "10.0.0.2:1"), out var stranger));
        Assert.Equal(ProtocolError.UnknownSession, stranger!.Code);
        Assert.Contains("belongs to sink-a", stranger.Detail, StringComparison.Ordinal);
        Assert.Null(pairing.TryJoin("s-5", new PeerIdentity("sink-a", false, "10.0.0.2:1"), out _));

        Assert.Equal("session s-5", pairing.TryJoin("s-5", sink with { Address = "10.0.0.1:2" }, out var none));
        Assert.Null(none);
        Assert.Null(pairing.TryJoin("s-5", sink, out var second));
        Assert.Contains("has its demand lane already", second!.Detail, StringComparison.Ordinal);

        Assert.Null(pairing.TryJoin("nobody", sink, out var unknown));
        Assert.Contains("no bulk session nobody", unknown!.Detail, StringComparison.Ordinal);
        pairing.Close("s-5");
        Assert.Empty(pairing.Sessions);
    }

    [Fact]
    public async Task The_failure_policy_tells_the_peer_about_a_violation_and_both_sides_get_typed_reasons()
    {
        var (client, server) = Pair();
        await using var _ = client;
        await using var __ = server;
        await client.SendAsync(FrameType.DemandRequest, new DemandRequestMessage { RequestId = 1 }, ReadOnlyMemory<byte>.Empty, Ct);

        var violation = await Assert.ThrowsAsync<ProtocolViolationException>(() => server.ReceiveAsync(frame =>
        {
            ThrowHelper.ThrowProtocol(ProtocolError.HashMismatch, "chunk 7 hashes to something else");
            return ValueTask.FromResult(true);
        }, Ct));
        var serverReason = await SessionFailure.CloseAsync(server, new AggregateException(violation));

        Assert.Equal(CloseKind.Protocol, serverReason.Kind);
        Assert.Equal(ProtocolError.HashMismatch, serverReason.Code);
        Assert.Same(serverReason, server.CloseReason);
        var peerSide = await Assert.ThrowsAsync<ProtocolViolationException>(() => client.ReceiveAsync(_ => ValueTask.FromResult(true), Ct));
        Assert.Contains("peer reported HashMismatch", peerSide.Message, StringComparison.Ordinal);
        Assert.Equal(CloseKind.PeerError, client.CloseReason!.Kind);
        Assert.Equal(ProtocolError.HashMismatch, client.CloseReason.Code);
        // A second failure on a closed connection keeps the first cause and sends nothing more.
        Assert.Same(serverReason, await SessionFailure.CloseAsync(server, new IOException("later")));
    }

    [Fact]
    public async Task A_local_fault_goes_to_the_peer_with_the_roles_code_and_a_stop_is_not_a_cause_of_its_own()
    {
        var (client, server) = Pair();
        await using var _ = client;
        await using var __ = server;

        var reason = await SessionFailure.CloseAsync(server, new IOException("No space left on device"),
            ex => CloseReason.Fault(ProtocolError.StoreFailure, $"the sink cannot store the snapshot: {ex.Message}"));
        Assert.Equal(CloseKind.Fault, reason.Kind);
        await Assert.ThrowsAsync<ProtocolViolationException>(() => client.ReceiveAsync(_ => ValueTask.FromResult(true), Ct));
        Assert.Equal(ProtocolError.StoreFailure, client.CloseReason!.Code);
        Assert.Contains("No space left on device", client.CloseReason.Detail, StringComparison.Ordinal);

        var stopped = CloseReason.Timeout("demand lane: the peer stopped reading");
        Assert.Same(stopped, SessionFailure.Classify(new OperationCanceledException(), stopped: stopped));
        Assert.Equal(CloseKind.LocalShutdown, SessionFailure.Classify(new OperationCanceledException("bye")).Kind);
        Assert.Equal(CloseKind.PeerClosed, SessionFailure.Classify(new EndOfStreamException("gone")).Kind);
    }

    [Fact]
    public async Task A_peer_that_stops_reading_fails_the_send_with_a_timeout_reason()
    {
        var options = TransportOptions.Default with { WriteStallTimeout = TimeSpan.FromMilliseconds(300), BulkPauseWriterThreshold = 64 << 10 };
        var (client, server) = Pair(options: options);
        await using var _ = client;
        await using var __ = server;

        // Nobody reads the client's side: the pipe fills to its pause threshold and the flush waits without progress.
        var payload = new byte[16 << 10];
        var stalled = await Assert.ThrowsAsync<TimeoutException>(async () =>
        {
            while (true)
            {
                await server.SendAsync(FrameType.ChunkBatch, new ChunkBatchMessage(), payload, Ct);
            }
        });
        Assert.Contains("the peer stopped reading", stalled.Message, StringComparison.Ordinal);
        Assert.Equal(CloseKind.Timeout, server.CloseReason!.Kind);
        Assert.True(server.BytesSent > 0);
    }

    [Fact]
    public async Task A_snapshot_streams_source_to_sink_in_memory_with_a_demand_read_on_the_paired_lane()
    {
        using var dir = new TempDir();
        var image = dir.File("mem.img");
        var bytes = new byte[4 << 20];
        new Random(11).NextBytes(bytes.AsSpan(1 << 20, 2 << 20));
        await File.WriteAllBytesAsync(image, bytes, Ct);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "memory-session");
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var ended = new TaskCompletionSource<DownstreamSessionStats>(TaskCreationOptions.RunContinuationsAsynchronously);
        server.SessionEnded += stats => ended.TrySetResult(stats);
        var serving = new List<Task>();

        // Each lane the sink opens is a fresh pipe pair whose server end the source serves, as its listener would.
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
        await using (var session = await UpstreamSession.ConnectAsync(ConnectAsync, "memory", store, new UpstreamOptions { PeerName = "sink-a" }, TransportOptions.Default, NullLogger.Instance, Ct))
        {
            Assert.False(session.Source.Verified);
            Assert.Equal("memory:server", session.Source.Address);
            // Read before the bulk stream is received: only the demand lane, paired with this session, can answer.
            var page = new byte[4096];
            Assert.Equal(page.Length, await session.ReadAsync(0, (2 << 20) + 8192, page, Ct));
            Assert.Equal(bytes.AsSpan((2 << 20) + 8192, 4096).ToArray(), page);

            await session.RunAsync();
            Assert.Equal(CloseKind.Completed, session.CloseReason!.Kind);
            Assert.Equal(bytes, await File.ReadAllBytesAsync(session.Snapshot.GetObjectPath(0), Ct));
        }
        var stats = await ended.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        Assert.True(stats.Completed, stats.Error);
        Assert.Equal("\"sink-a\" (unverified, memory:client)", stats.Peer);
        Assert.True(stats.DemandRequests >= 1);
        Assert.Equal(CloseKind.Completed, stats.CloseReason!.Kind);
        await Task.WhenAll(serving);
    }
}
