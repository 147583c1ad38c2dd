using StreamClone.Qemu.Nbd;

namespace StreamClone.Tests.Unit.Nbd;

/// <summary>
/// QEMU's NBD server is a peer too: every length and offset in its replies is checked before it sizes or places
/// anything. A bad reply is one <see cref="NbdException"/> naming the value; a reported request error keeps the
/// connection usable; a framing violation leaves it refusing further requests.
/// </summary>
public class NbdClientHostileTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<NbdException> ReadFailsAsync(Func<NbdRequest, byte[]> reply, int length = 4096)
    {
        await using var server = new FakeNbdServer(reply);
        await using var client = await NbdClient.ConnectAsync(server.Path, "disk", Ct);
        var buffer = new byte[length];
        return await Assert.ThrowsAsync<NbdException>(async () => await client.ReadAsync(4096, buffer, Ct));
    }

    [Fact]
    public async Task A_well_formed_read_and_block_status_work()
    {
        await using var server = new FakeNbdServer(r => r.Type == 7
            ? FakeNbdServer.Status(r.Cookie, FakeNbdServer.ContextId, (4096, 0), (8192, 3))
            : FakeNbdServer.Data(r.Cookie, r.Offset, Enumerable.Repeat((byte)0xAB, (int)r.Length).ToArray()));
        await using var client = await NbdClient.ConnectAsync(server.Path, "disk", Ct);
        Assert.Equal(FakeNbdServer.ExportSize, client.Size);
        var extents = await client.GetExtentsAsync(0, 8192, Ct);
        // The second extent reaches past the request and is cut at its end.
        Assert.Equal([new NbdExtent(0, 4096, false), new NbdExtent(4096, 4096, true)], extents);
        var buffer = new byte[4096];
        await client.ReadAsync(0, buffer, Ct);
        Assert.All(buffer, b => Assert.Equal(0xAB, b));
    }

    [Fact]
    public async Task A_data_chunk_placed_outside_the_request_is_refused() =>
        Assert.Contains("outside the request", (await ReadFailsAsync(r => FakeNbdServer.Data(r.Cookie, r.Offset + 4096, new byte[4096]))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task A_data_chunk_longer_than_the_request_is_refused() =>
        Assert.Contains("data chunk of", (await ReadFailsAsync(r => FakeNbdServer.Data(r.Cookie, r.Offset, new byte[8192]))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task A_chunk_announcing_4_GiB_is_refused_before_anything_is_allocated() =>
        Assert.Contains("data chunk of 4294967295 bytes", (await ReadFailsAsync(r => FakeNbdServer.Chunk(r.Cookie, 1, true, new byte[8], uint.MaxValue))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task A_read_answered_only_in_part_is_refused() =>
        Assert.Contains("answered with 2048 bytes", (await ReadFailsAsync(r => FakeNbdServer.Data(r.Cookie, r.Offset, new byte[2048]))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task Overlapping_data_chunks_are_refused() =>
        Assert.Contains("overlapping", (await ReadFailsAsync(r => [.. FakeNbdServer.Data(r.Cookie, r.Offset, new byte[4096], done: false), .. FakeNbdServer.Data(r.Cookie, r.Offset, new byte[4096])])).Message, StringComparison.Ordinal);

    [Fact]
    public async Task A_reply_for_another_cookie_is_refused() =>
        Assert.Contains("cookie", (await ReadFailsAsync(r => FakeNbdServer.Data(r.Cookie + 1, r.Offset, new byte[4096]))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task A_zero_length_extent_is_refused()
    {
        await using var server = new FakeNbdServer(r => FakeNbdServer.Status(r.Cookie, FakeNbdServer.ContextId, (0, 0)));
        await using var client = await NbdClient.ConnectAsync(server.Path, "disk", Ct);
        var error = await Assert.ThrowsAsync<NbdException>(async () => await client.GetExtentsAsync(0, 4096, Ct));
        Assert.Contains("extent of length 0", error.Message, StringComparison.Ordinal);
        // Framing is in doubt after a violation: the connection refuses further requests.
        var next = await Assert.ThrowsAsync<NbdException>(async () => await client.ReadAsync(0, new byte[512], Ct));
        Assert.Contains("out of step", next.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_option_reply_announcing_4_GiB_is_refused_in_the_handshake()
    {
        await using var server = new FakeNbdServer(_ => [], optionReplyLengthOverride: uint.MaxValue);
        var error = await Assert.ThrowsAsync<NbdException>(() => NbdClient.ConnectAsync(server.Path, "disk", Ct));
        Assert.Contains("option reply of 4294967295 bytes", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_read_error_reported_by_the_server_fails_that_read_only()
    {
        var calls = 0;
        await using var server = new FakeNbdServer(r => ++calls == 1 ? FakeNbdServer.Error(r.Cookie, 5) : FakeNbdServer.Data(r.Cookie, r.Offset, new byte[r.Length]));
        await using var client = await NbdClient.ConnectAsync(server.Path, "disk", Ct);
        var error = await Assert.ThrowsAsync<NbdException>(async () => await client.ReadAsync(0, new byte[4096], Ct));
        Assert.Contains("error 5", error.Message, StringComparison.Ordinal);
        await client.ReadAsync(0, new byte[4096], Ct);
    }

    [Fact]
    public async Task A_read_past_the_export_is_not_sent()
    {
        await using var server = new FakeNbdServer(r => FakeNbdServer.Data(r.Cookie, r.Offset, new byte[r.Length]));
        await using var client = await NbdClient.ConnectAsync(server.Path, "disk", Ct);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await client.ReadAsync(FakeNbdServer.ExportSize - 512, new byte[4096], Ct));
    }
}
