using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>The CLI as real processes against hand-made peers that go silent or leave early.</summary>
public class PeerTimeoutProcessTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>
    /// A source that does its part of the handshake (Hello, offer, takes the inventory; Hello on the
    /// demand lane) and then never sends another byte, holding both connections open.
    /// </summary>
    private static async Task RunSilentSourceAsync(TcpListener listener, CancellationToken ct)
    {
        var held = new List<RawFramePeer>();
        try
        {
            while (true)
            {
                var peer = RawFramePeer.Wrap(await listener.AcceptSocketAsync(ct));
                held.Add(peer);
                var hello = await peer.ReadHeaderAsync<HelloMessage>(FrameType.Hello, ct);
                await peer.SendAsync(FrameType.Hello, new HelloMessage { Role = "source", Lane = hello.Lane, SessionId = hello.SessionId }, ct: ct);
                if (hello.Lane != Lane.Bulk)
                {
                    continue;
                }
                await peer.SendAsync(FrameType.SnapshotOffer, new SnapshotOfferMessage
                {
                    SnapshotId = "silent-source",
                    CreatedUtc = DateTime.UtcNow,
                    Objects = [new ObjectInfo { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = 1 << 20, ChunkSize = 4096 }],
                }, ct: ct);
                while (!(await peer.ReadHeaderAsync<InventoryMessage>(FrameType.Inventory, ct)).Last)
                {
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var peer in held)
            {
                peer.Dispose();
            }
        }
    }

    [Fact]
    public async Task A_sink_whose_source_goes_silent_exits_with_one_clear_line_after_the_idle_timeout()
    {
        using var dir = new TempDir();
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var silentSource = RunSilentSourceAsync(listener, stop.Token);
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json", "--idle-timeout", "2", "--insecure");
        var exit = await sink.WaitAsync(Guard);
        await stop.CancelAsync();
        await silentSource;

        Assert.True(exit != 0, $"sink exit {exit}:\n{sink.Stderr}");
        var last = Assert.Single(sink.FailureLines);
        Assert.Contains("bulk 127.0.0.1:", last, StringComparison.Ordinal);
        Assert.Contains("no bytes from the peer for 2 s", last, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", sink.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Only_stored_snapshots_count_towards_sessions_so_bogus_peers_do_not_end_the_source_before_the_real_sink()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 21);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1", "--insecure");
        await using var _ = source;
        var endPoint = new IPEndPoint(IPAddress.Loopback, port);

        // A bulk Hello, the offer read, then gone without an inventory: refused, never a session.
        using (var bogus = await RawFramePeer.ConnectAsync(endPoint, Ct))
        {
            await bogus.SendHelloAsync("bogus-hello", ct: Ct);
            await bogus.ReadHeaderAsync<HelloMessage>(FrameType.Hello, Ct);
            await bogus.ReadHeaderAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, Ct);
        }
        await WaitForLogAsync(source, "bogus-hello");

        // A session that starts streaming and then leaves: it fails, and does not count either.
        using (var quitter = await RawFramePeer.ConnectAsync(endPoint, Ct))
        {
            await quitter.SendHelloAsync("bogus-quitter", ct: Ct);
            await quitter.ReadHeaderAsync<HelloMessage>(FrameType.Hello, Ct);
            await quitter.ReadHeaderAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, Ct);
            await quitter.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 0, Last = true }, ct: Ct);
            await quitter.ReadHeaderAsync<ChunkBatchMessage>(FrameType.ChunkBatch, Ct);
        }
        await WaitForLogAsync(source, "bogus-quitter");

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json", "--insecure");
        Assert.True(await sink.WaitAsync(Guard) == 0, $"sink:\n{sink.Stderr}\nsource:\n{source.Stderr}");
        using var summary = JsonDocument.Parse(sink.LastLine);
        var copy = summary.RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;
        Assert.Equal(await File.ReadAllBytesAsync(image, Ct), await File.ReadAllBytesAsync(copy, Ct));

        // The source ends after the one stored snapshot; the failed session is reported and makes the exit code 1.
        Assert.Equal(1, await source.WaitAsync(Guard));
        using var report = JsonDocument.Parse(source.LastLine);
        var sessions = report.RootElement.GetProperty("sessions");
        Assert.Equal(2, sessions.GetArrayLength());
        Assert.Equal("bogus-quitter", sessions[0].GetProperty("session").GetString());
        Assert.False(sessions[0].GetProperty("completed").GetBoolean());
        Assert.True(sessions[1].GetProperty("completed").GetBoolean());
    }

    /// <summary>Waits until the source has logged <paramref name="text"/> (a session id; logged at Warning or above when a peer is refused or fails).</summary>
    private static Task WaitForLogAsync(RunningProcess source, string text) =>
        source.WaitForLineAsync(OutputStream.Stderr, l => l.Contains(text, StringComparison.Ordinal), Guard, Ct);
}
