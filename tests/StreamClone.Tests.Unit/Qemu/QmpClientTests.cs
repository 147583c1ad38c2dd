using System.Text.Json.Nodes;
using StreamClone.Qemu;

namespace StreamClone.Tests.Unit.Qemu;

public class QmpClientTests
{
    private static readonly QmpClientOptions Fast = new()
    {
        GreetingTimeout = TimeSpan.FromMilliseconds(500),
        CommandTimeout = TimeSpan.FromSeconds(10),
    };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Connect_parses_the_greeting_and_negotiates_capabilities_first()
    {
        await using var server = new FakeQmpServer();
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        Assert.Equal(new QmpVersion(7, 2, 22, "Debian 1:7.2+dfsg-7+deb12u18+b3"), qmp.Version);
        Assert.Equal(["oob"], qmp.Capabilities);
        Assert.True(server.Negotiated.Task.IsCompleted);
    }

    [Fact]
    public async Task Arguments_with_hyphenated_names_are_sent_and_the_return_value_comes_back()
    {
        await using var server = new FakeQmpServer();
        server.OnCommand = (cmd, id, send) => send($$"""{"return": {"status": "running", "running": true}, "id": {{id}}}""");
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        var result = await qmp.ExecuteAsync("blockdev-snapshot-sync",
            new JsonObject { ["node-name"] = "disk0", ["snapshot-file"] = "/x.qcow2" }, Ct);

        Assert.Equal("running", result.GetProperty("status").GetString());
        var sent = Assert.Single(server.Received);
        Assert.Equal("disk0", sent.GetProperty("arguments").GetProperty("node-name").GetString());
    }

    [Fact]
    public async Task An_error_reply_becomes_a_typed_QmpException()
    {
        await using var server = new FakeQmpServer();
        server.OnCommand = (cmd, id, send) =>
            send($$"""{"error": {"class": "DeviceNotActive", "desc": "No active block job with device 'j1'"}, "id": {{id}}}""");
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        var e = await Assert.ThrowsAsync<QmpException>(() => qmp.ExecuteAsync("block-job-complete", null, Ct));

        Assert.Equal("DeviceNotActive", e.Class);
        Assert.Equal("No active block job with device 'j1'", e.Desc);
        Assert.Equal("block-job-complete", e.Command);
    }

    [Fact]
    public async Task Events_that_arrive_before_the_reply_are_not_lost()
    {
        await using var server = new FakeQmpServer();
        server.OnCommand = async (cmd, id, send) =>
        {
            // As QEMU does for migrate (qmp.md §2): an event first, then the reply, then more events.
            await send("""{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "MIGRATION", "data": {"status": "setup"}}""");
            await send($$"""{"return": {}, "id": {{id}}}""");
            await send("""{"timestamp": {"seconds": 1700000000, "microseconds": 9}, "event": "STOP"}""");
            await send("""{"timestamp": {"seconds": 1700000001, "microseconds": 0}, "event": "MIGRATION", "data": {"status": "completed"}}""");
        };
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        var mark = qmp.LastEventSequence;
        await qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = "fd:snap" }, Ct);
        var setup = await qmp.WaitForEventAsync("MIGRATION", mark, e => e.GetString("status") == "setup", TimeSpan.FromSeconds(5), Ct);
        var done = await qmp.WaitForEventAsync("MIGRATION", mark, e => e.GetString("status") == "completed", TimeSpan.FromSeconds(5), Ct);
        var stop = await qmp.WaitForEventAsync("STOP", mark, null, TimeSpan.FromSeconds(5), Ct);

        Assert.True(setup.Sequence < stop.Sequence && stop.Sequence < done.Sequence);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1700000000).AddTicks(50), setup.Timestamp);
        Assert.Equal(System.Text.Json.JsonValueKind.Undefined, stop.Data.ValueKind);
    }

    [Fact]
    public async Task Waiting_after_a_mark_ignores_older_events_and_times_out_clearly()
    {
        await using var server = new FakeQmpServer();
        server.OnCommand = async (cmd, id, send) =>
        {
            await send("""{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "MIGRATION", "data": {"status": "completed"}}""");
            await send($$"""{"return": {}, "id": {{id}}}""");
        };
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);
        await qmp.ExecuteAsync("first", null, Ct);
        var mark = qmp.LastEventSequence;
        Assert.Equal(1, mark);

        var e = await Assert.ThrowsAsync<TimeoutException>(() =>
            qmp.WaitForEventAsync("MIGRATION", mark, null, TimeSpan.FromMilliseconds(200), Ct));
        Assert.Contains("MIGRATION", e.Message, StringComparison.Ordinal);
        Assert.Contains(server.Path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_id_less_error_fails_the_oldest_pending_command_only()
    {
        await using var server = new FakeQmpServer();
        var ids = new List<string>();
        var firstIn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.OnCommand = async (cmd, id, send) =>
        {
            ids.Add(id);
            firstIn.TrySetResult();
            if (ids.Count < 2)
                return; // Hold the first until the second is in.
            await send("""{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}""");
            await send($$"""{"return": {"second": true}, "id": {{ids[1]}}}""");
        };
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        var first = qmp.ExecuteAsync("first", null, Ct);
        await firstIn.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        var second = qmp.ExecuteAsync("second", null, Ct);

        var e = await Assert.ThrowsAsync<QmpException>(() => first);
        Assert.Equal("GenericError", e.Class);
        Assert.Equal("first", e.Command);
        Assert.True((await second).GetProperty("second").GetBoolean());
    }

    [Fact]
    public async Task Replies_are_routed_by_id_even_out_of_order()
    {
        await using var server = new FakeQmpServer();
        var ids = new List<string>();
        var firstIn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.OnCommand = async (cmd, id, send) =>
        {
            ids.Add(id);
            firstIn.TrySetResult();
            if (ids.Count < 2)
                return;
            await send($$"""{"return": 2, "id": {{ids[1]}}}""");
            await send($$"""{"return": 1, "id": {{ids[0]}}}""");
        };
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        var first = qmp.ExecuteAsync("a", null, Ct);
        await firstIn.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        var second = qmp.ExecuteAsync("b", null, Ct);

        Assert.Equal(1, (await first).GetInt32());
        Assert.Equal(2, (await second).GetInt32());
    }

    [Fact]
    public async Task A_reply_split_into_single_bytes_is_reassembled()
    {
        await using var raw = new RawPeer();
        var client = QmpClient.ConnectAsync(raw.Path, Fast, ct: Ct);
        var conn = await raw.AcceptAsync();
        await SendBytewise(conn, FakeQmpServer.Greeting + "\r\n");
        var caps = await raw.ReadLineAsync(conn);
        Assert.Contains("qmp_capabilities", caps, StringComparison.Ordinal);
        var capsId = System.Text.Json.JsonDocument.Parse(caps).RootElement.GetProperty("id").GetRawText();
        await SendBytewise(conn, $$"""{"return": {}, "id": {{capsId}}}""" + "\r\n");
        await using var qmp = await client;

        var pending = qmp.ExecuteAsync("query-status", null, Ct);
        var cmd = await raw.ReadLineAsync(conn);
        var id = System.Text.Json.JsonDocument.Parse(cmd).RootElement.GetProperty("id").GetRawText();
        await SendBytewise(conn,
            """{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "RESUME"}""" + "\r\n" +
            $$"""{"return": {"value": "a\u00e9"}, "id": {{id}}}""" + "\r\n");

        Assert.Equal("aé", (await pending).GetProperty("value").GetString());
        Assert.Equal("RESUME", (await qmp.WaitForEventAsync("RESUME", 0, null, TimeSpan.FromSeconds(5), Ct)).Name);
    }

    [Fact]
    public async Task A_reply_larger_than_the_initial_buffer_is_read_whole()
    {
        var big = new string('q', 300_000);
        await using var server = new FakeQmpServer();
        server.OnCommand = (cmd, id, send) => send($$"""{"return": "{{big}}", "id": {{id}}}""");
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        Assert.Equal(big, (await qmp.ExecuteAsync("query-qmp-schema", null, Ct)).GetString());
        Assert.Equal(big, (await qmp.ExecuteAsync("query-qmp-schema", null, Ct)).GetString());
    }

    [Fact]
    public async Task A_silent_peer_is_named_in_a_greeting_timeout()
    {
        await using var server = new FakeQmpServer(greeting: null);

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => QmpClient.ConnectAsync(server.Path, Fast, ct: Ct));

        Assert.Contains(server.Path, e.Message, StringComparison.Ordinal);
        Assert.Contains("no QMP greeting", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("HTTP/1.1 400 Bad Request")]
    [InlineData("SSH-2.0-OpenSSH_9.2p1")]
    [InlineData("{\"hello\": 1}")]
    [InlineData("[1,2,3]")]
    public async Task A_peer_that_is_not_QEMU_is_rejected_naming_the_path(string firstLine)
    {
        await using var server = new FakeQmpServer(greeting: firstLine);

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => QmpClient.ConnectAsync(server.Path, Fast, ct: Ct));

        Assert.Contains(server.Path, e.Message, StringComparison.Ordinal);
        Assert.Contains("not a QMP monitor", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nothing_listening_is_a_clear_error()
    {
        var path = Path.Combine(Path.GetTempPath(), $"sc-nothing-{Guid.NewGuid():N}.sock");

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => QmpClient.ConnectAsync(path, Fast, ct: Ct));

        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Garbage_after_the_greeting_fails_pending_commands_and_later_ones()
    {
        await using var server = new FakeQmpServer();
        server.OnCommand = (cmd, id, send) => send("\u0001\u0002 not json");
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => qmp.ExecuteAsync("query-status", null, Ct));
        Assert.Contains("not JSON", e.Message, StringComparison.Ordinal);
        Assert.Contains(server.Path, e.Message, StringComparison.Ordinal);
        await qmp.Completion.WaitAsync(TimeSpan.FromSeconds(5), Ct);
        await Assert.ThrowsAsync<QmpProtocolException>(() => qmp.ExecuteAsync("query-status", null, Ct));
        await Assert.ThrowsAsync<QmpProtocolException>(() => qmp.WaitForEventAsync("X", 0, null, TimeSpan.FromSeconds(5), Ct));
    }

    [Theory]
    [InlineData("""{"error": {"class": 5, "desc": "x"}, "id": ID}""")]
    [InlineData("""{"event": "STOP", "timestamp": 7}""")]
    [InlineData("""{"event": "STOP", "timestamp": {"seconds": "x", "microseconds": 0}}""")]
    public async Task A_message_with_members_of_the_wrong_type_ends_the_connection_instead_of_hanging(string message)
    {
        await using var server = new FakeQmpServer();
        server.OnCommand = (cmd, id, send) => send(message.Replace("ID", id, StringComparison.Ordinal));
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => qmp.ExecuteAsync("query-status", null, Ct));

        Assert.Contains(server.Path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_oversized_line_is_rejected_before_it_is_buffered()
    {
        await using var server = new FakeQmpServer();
        server.OnCommand = (cmd, id, send) => send(new string('x', 300_000));
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast with { MaxLineBytes = 100_000 }, ct: Ct);

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => qmp.ExecuteAsync("query-qmp-schema", null, Ct));

        Assert.Contains("100000", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_peer_closing_fails_the_pending_command()
    {
        var server = new FakeQmpServer();
        var received = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.OnCommand = (cmd, id, send) =>
        {
            received.TrySetResult();
            return Task.CompletedTask;
        };
        await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast, ct: Ct);
        var pending = qmp.ExecuteAsync("quit", null, Ct);
        await received.Task.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        await server.DisposeAsync();

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => pending);
        Assert.Contains(server.Path, e.Message, StringComparison.Ordinal);
    }

    private static async Task SendBytewise(System.Net.Sockets.Socket socket, string text)
    {
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(text))
            await socket.SendAsync(new[] { b });
    }
}
