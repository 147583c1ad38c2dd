using CsCheck;
using StreamClone.Shared.Qemu;

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
}
