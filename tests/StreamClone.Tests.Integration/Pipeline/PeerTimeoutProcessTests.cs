using System.Diagnostics;
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

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json", "--idle-timeout", "2");
        var exit = await sink.WaitAsync(Guard);
        await stop.CancelAsync();
        await silentSource;

        Assert.True(exit != 0, $"sink exit {exit}:\n{sink.Stderr}");
        var last = sink.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Last();
        Assert.StartsWith("streamclone: bulk 127.0.0.1:", last, StringComparison.Ordinal);
        Assert.Contains("no bytes from the peer for 2 s", last, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", sink.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bogus_Hello_does_not_count_towards_sessions_and_the_real_sink_is_served_before_the_source_exits()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 21);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using var _ = source;

        // A bulk Hello, the offer read, then gone without an inventory.
        using (var bogus = await RawFramePeer.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), Ct))
        {
            await bogus.SendHelloAsync("bogus", ct: Ct);
            await bogus.ReadHeaderAsync<HelloMessage>(FrameType.Hello, Ct);
            await bogus.ReadHeaderAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, Ct);
        }
        // The source has seen it go (it logs the session id at Warning or above either way).
        var clock = Stopwatch.StartNew();
        while (!source.Stderr.Contains("bogus", StringComparison.Ordinal))
        {
            Assert.True(clock.Elapsed < Guard, $"the source did not notice the bogus peer leave:\n{source.Stderr}");
            await Task.Delay(20, Ct);
        }

        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json");
        Assert.True(await sink.WaitAsync(Guard) == 0, $"sink:\n{sink.Stderr}\nsource:\n{source.Stderr}");
        using var summary = JsonDocument.Parse(sink.LastLine);
        var copy = summary.RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;
        Assert.Equal(await File.ReadAllBytesAsync(image, Ct), await File.ReadAllBytesAsync(copy, Ct));

        Assert.True(await source.WaitAsync(Guard) == 0, source.Stderr);
        using var report = JsonDocument.Parse(source.LastLine);
        var session = Assert.Single(report.RootElement.GetProperty("sessions").EnumerateArray());
        Assert.True(session.GetProperty("completed").GetBoolean());
    }
}
