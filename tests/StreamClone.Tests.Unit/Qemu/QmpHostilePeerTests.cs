using CsCheck;
using StreamClone.Qemu;

namespace StreamClone.Tests.Unit.Qemu;

public class QmpHostilePeerTests
{
    private static readonly QmpClientOptions Fast = new()
    {
        GreetingTimeout = TimeSpan.FromMilliseconds(500),
        CommandTimeout = TimeSpan.FromSeconds(5),
    };

    /// <summary>Whatever a non-QEMU peer sends first, the client fails with a QmpProtocolException naming the path.</summary>
    [Fact]
    public async Task Random_first_lines_are_rejected_as_not_QMP() =>
        await Gen.Byte.Array[0, 300].SampleAsync(async bytes =>
        {
            await using var peer = new RawPeer();
            var connect = QmpClient.ConnectAsync(peer.Path, Fast);
            var conn = await peer.AcceptAsync();
            await conn.SendAsync((byte[])[.. bytes, (byte)'\n'], System.Net.Sockets.SocketFlags.None);

            var e = await Assert.ThrowsAsync<QmpProtocolException>(() => connect);
            Assert.Contains(peer.Path, e.Message, StringComparison.Ordinal);
        }, iter: 100, threads: 1);

    /// <summary>After a good handshake, random reply bytes end in a value or a typed error, never a hang
    /// or a stray exception type.</summary>
    [Fact]
    public async Task Random_replies_end_the_command_with_a_typed_outcome() =>
        await Gen.Byte.Array[0, 300].SampleAsync(async bytes =>
        {
            await using var server = new FakeQmpServer();
            server.OnCommand = (cmd, id, send) => send(System.Text.Encoding.Latin1.GetString(bytes));
            await using var qmp = await QmpClient.ConnectAsync(server.Path, Fast);

            var outcome = await Record.ExceptionAsync(() => qmp.ExecuteAsync("query-status", null, TestContext.Current.CancellationToken));
            Assert.True(outcome is null or QmpException or QmpProtocolException or TimeoutException,
                $"unexpected {outcome?.GetType().Name}: {outcome?.Message}");
        }, iter: 100, threads: 1);

    /// <summary>
    /// A reply whose error class is not valid UTF-8 fails the command as a protocol error at once. It used to
    /// be lost: reading the class threw, and so did quoting the reply in the error (GetRawText), after the
    /// command had left the pending table, so the caller waited out the command timeout. Found by the fuzz
    /// target "qmp" (tests/StreamClone.Tests.Fuzz).
    /// </summary>
    [Fact]
    public async Task A_reply_that_is_not_UTF8_fails_the_command_instead_of_losing_it()
    {
        await using var peer = new RawPeer();
        // The guard only bounds a broken client: the protocol error must come long before it.
        var connect = QmpClient.ConnectAsync(peer.Path, Fast with { CommandTimeout = TimeSpan.FromSeconds(30) }, ct: TestContext.Current.CancellationToken);
        var conn = await peer.AcceptAsync();
        await conn.SendAsync(System.Text.Encoding.UTF8.GetBytes(FakeQmpServer.Greeting + "\r\n"), System.Net.Sockets.SocketFlags.None);
        await peer.ReadLineAsync(conn);
        byte[] reply = [.. "{\"error\": {\"class\": \"Co"u8, 0xC4, .. "mmandNotFound\", \"desc\": \"x\"}, \"id\": 1}\r\n"u8];
        await conn.SendAsync(reply, System.Net.Sockets.SocketFlags.None);

        var e = await Assert.ThrowsAsync<QmpProtocolException>(() => connect);
        Assert.Contains("UTF-8", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// An event whose data is not UTF-8 ends the connection with a protocol error. It used to be delivered,
    /// and its reader (QmpMigration, LiveDiskSnapshot: <c>e.GetString("status")</c>) failed with an
    /// InvalidOperationException instead. Found by the fuzz target "qmp" (tests/StreamClone.Tests.Fuzz).
    /// </summary>
    [Fact]
    public async Task An_event_that_is_not_UTF8_is_a_protocol_error_not_a_bad_event()
    {
        await using var peer = new RawPeer();
        var connect = QmpClient.ConnectAsync(peer.Path, Fast, ct: TestContext.Current.CancellationToken);
        var conn = await peer.AcceptAsync();
        await conn.SendAsync(System.Text.Encoding.UTF8.GetBytes(FakeQmpServer.Greeting + "\r\n"), System.Net.Sockets.SocketFlags.None);
        await peer.ReadLineAsync(conn);
        await conn.SendAsync("{\"return\": {}, \"id\": 1}\r\n"u8.ToArray(), System.Net.Sockets.SocketFlags.None);
        await using var qmp = await connect;
        byte[] evt = [.. "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"compl"u8, 0xC4, .. "ted\"}}\r\n"u8];
        await conn.SendAsync(evt, System.Net.Sockets.SocketFlags.None);

        await Assert.ThrowsAsync<QmpProtocolException>(async () =>
        {
            await foreach (var e in qmp.ReadEventsAsync(0, TestContext.Current.CancellationToken))
            {
                _ = e.GetString("status");
            }
        });
    }
}
