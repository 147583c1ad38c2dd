using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Perf.Faults;
using StreamClone.Store;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Relay;

/// <summary>
/// What goes wrong around a relay (issue 8 "Failure", "Bad input"): a relay killed mid-stream, a relay restarted over a
/// stale and tampered cache, a relay from another CA. Real processes over loopback, mutual TLS.
/// </summary>
public class RelayFailureTests
{
    private static readonly TimeSpan ExitGuard = TimeSpan.FromMinutes(3);

    private static string CopyPath(RunningProcess sink) =>
        JsonDocument.Parse(sink.LastLine).RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;

    /// <summary>
    /// B's children reach it through a proxy that paces the bytes, so B is killed (SIGKILL) while they are mid-stream;
    /// the offer named A as B's upstream, so both reattach to A, resume from their stores and end identical.
    /// </summary>
    [Fact]
    public async Task Sinks_of_a_relay_killed_mid_stream_reattach_to_its_upstream_and_end_identical()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 48 << 20, seed: 92);
        var (source, sourcePort) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using var _ = source;
        var (a, aPort) = await RelayChainTests.StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{sourcePort}", "--cache", dir.File("cache-a"), "--sessions", "2");
        await using var __ = a;
        var (b, bPort) = await RelayChainTests.StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{aPort}", "--cache", dir.File("cache-b"));
        await using var ___ = b;
        await using var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, bPort)) { BytesPerSecond = 2 << 20 };

        await using var first = RelayChainTests.StartSink(dir, "store-1", $"127.0.0.1:{proxy.EndPoint.Port}", "--reattach-timeout", "60");
        await using var second = RelayChainTests.StartSink(dir, "store-2", $"127.0.0.1:{proxy.EndPoint.Port}", "--reattach-timeout", "60");
        using var midStream = new CancellationTokenSource(ExitGuard);
        await proxy.WhenBytesAsync(1, ProxyDirection.Downstream, 2 << 20, midStream.Token);
        b.Kill();

        var expected = await File.ReadAllBytesAsync(image);
        foreach (var sink in new[] { first, second })
        {
            Assert.True(await sink.WaitAsync(ExitGuard) == 0, sink.Stderr);
            Assert.Equal(expected, await File.ReadAllBytesAsync(CopyPath(sink)));
            Assert.Contains(sink.StderrLines, l => l.Contains($"Reattached to 127.0.0.1:{aPort}", StringComparison.Ordinal));
        }
        // A exits once both sinks stored the snapshot; non-zero, as a source does, because one child (B) failed.
        Assert.True(await a.WaitAsync(ExitGuard) == 1, a.Stderr);
        using var summary = JsonDocument.Parse(a.LastLine);
        Assert.Equal(2, summary.RootElement.GetProperty("children_completed").GetInt32());
        Assert.Equal(3, summary.RootElement.GetProperty("children").GetInt32());
        Assert.Equal(0, await source.WaitAsync(ExitGuard));
    }

    /// <summary>
    /// A relay's first run stops part way (its upstream stalls, then the relay is stopped): its cache holds a partial
    /// snapshot. Chunks of it are then overwritten on disk. Restarted over that cache, the relay's inventory still
    /// lists them, so its upstream sends Known entries it must expand from the cache: the tampered ones fail their
    /// hash there, are dropped and fetched again; the sinks end identical and never see the tampered bytes.
    /// </summary>
    [Fact]
    public async Task A_relay_restarted_over_a_stale_tampered_cache_never_serves_the_tampered_bytes()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 32 << 20, seed: 93);
        var expected = await File.ReadAllBytesAsync(image);
        string[] offer = ["--image", image, "--snapshot-id", "stale-1"];
        var (stalling, stallingPort) = await StreamCloneProcess.StartSourceAsync(dir.Path, offer);
        await using var _ = stalling;
        await using (var proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, stallingPort)))
        {
            proxy.Inject(connection: 1, ProxyDirection.Downstream, ProxyFault.StallAfter(3 << 20));
            var (firstRun, _) = await RelayChainTests.StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{proxy.EndPoint.Port}", "--cache", dir.File("cache"),
                "--log-level", "Information");
            await using (firstRun)
            {
                using var stalled = new CancellationTokenSource(ExitGuard);
                await proxy.WhenBytesAsync(1, ProxyDirection.Downstream, 3 << 20, stalled.Token);
                // SIGTERM: the relay stores what it verified and flushes it (a partial snapshot) before it exits.
                await firstRun.StopAsync(TimeSpan.FromSeconds(30));
            }
        }
        await stalling.StopAsync(TimeSpan.FromSeconds(10));

        var tampered = TamperPresentChunks(dir.File("cache"), "stale-1", chunks: 8);
        Assert.True(tampered.Count > 0, "the first run stored nothing to tamper with");

        var (source, sourcePort) = await StreamCloneProcess.StartSourceAsync(dir.Path, [.. offer, "--sessions", "1"]);
        await using var __ = source;
        var (relay, relayPort) = await RelayChainTests.StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{sourcePort}", "--cache", dir.File("cache"),
            "--sessions", "2", "--log-level", "Information");
        await using var ___ = relay;
        await using var first = RelayChainTests.StartSink(dir, "store-1", $"127.0.0.1:{relayPort}");
        await using var second = RelayChainTests.StartSink(dir, "store-2", $"127.0.0.1:{relayPort}");
        foreach (var sink in new[] { first, second })
        {
            Assert.True(await sink.WaitAsync(ExitGuard) == 0, sink.Stderr);
            Assert.Equal(expected, await File.ReadAllBytesAsync(CopyPath(sink)));
        }
        Assert.True(await relay.WaitAsync(ExitGuard) == 0, relay.Stderr);
        Assert.Contains(relay.StderrLines, l => l.Contains("Relay restarted over snapshot stale-1", StringComparison.Ordinal));
        // The store dropped the damaged chunks where the relay read them (ReadVerified), each logged once.
        Assert.True(relay.StderrLines.Any(l => l.Contains("does not match its hash", StringComparison.Ordinal) && l.Contains("stale-1", StringComparison.Ordinal)), relay.Stderr);
    }

    /// <summary>Overwrites up to <paramref name="chunks"/> present non-zero chunks of the snapshot's first object; returns their indexes.</summary>
    private static List<long> TamperPresentChunks(string cache, string snapshotId, int chunks)
    {
        List<long> indexes = [];
        string path;
        int chunkSize;
        using (var store = ChunkStore.OpenReadOnly(cache, NullLogger.Instance))
        {
            var snapshot = store.GetSnapshot(snapshotId) ?? throw new InvalidOperationException($"no snapshot {snapshotId} in {cache}");
            var obj = snapshot.Objects[0];
            chunkSize = obj.ChunkSize;
            path = snapshot.GetObjectPath(0);
            var buffer = new byte[chunkSize];
            for (long i = 0; i < obj.Size / chunkSize && indexes.Count < chunks; i++)
            {
                if (snapshot.IsPresent(0, i) && snapshot.Read(0, i * chunkSize, buffer) == chunkSize && buffer.AsSpan().ContainsAnyExcept((byte)0))
                {
                    indexes.Add(i);
                }
            }
        }
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Write);
        var garbage = Enumerable.Repeat((byte)0xAB, chunkSize).ToArray();
        foreach (var index in indexes)
        {
            RandomAccess.Write(file, garbage, index * chunkSize);
        }
        return indexes;
    }

    /// <summary>
    /// A relay with a certificate of another CA: the source refuses it (one line naming the CA, the relay exits with one
    /// line), and a sink of the cluster refuses to pull from it (one line).
    /// </summary>
    [Fact]
    public async Task A_relay_from_another_CA_is_refused_by_the_source_and_by_a_sink()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 4 << 20, seed: 94);
        var otherPki = dir.File("other-pki");
        await using (var init = StreamCloneProcess.Start("pki", "init", "--out", otherPki))
        {
            Assert.Equal(0, await init.WaitAsync(ExitGuard));
        }
        await using (var issue = StreamCloneProcess.Start("pki", "issue", "--pki", otherPki, "--name", "stranger"))
        {
            Assert.Equal(0, await issue.WaitAsync(ExitGuard));
        }
        string[] stranger = ["--pki", otherPki, "--node", "stranger"];
        var (source, sourcePort) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image);
        await using var _ = source;

        var (refused, __) = await RelayChainTests.StartRelayAsync(dir.Path, ["--upstream", $"127.0.0.1:{sourcePort}", "--cache", dir.File("cache-1"), .. stranger]);
        await using (refused)
        {
            Assert.Equal(1, await refused.WaitAsync(ExitGuard));
            Assert.Single(refused.FailureLines);
        }
        Assert.Contains(source.StderrLines, l => l.Contains("refused", StringComparison.OrdinalIgnoreCase) && l.Contains("another CA", StringComparison.OrdinalIgnoreCase));

        // Listening (its upstream is not there yet, so it keeps trying): a sink of the cluster will not pull from it.
        var (listening, port) = await RelayChainTests.StartRelayAsync(dir.Path,
            ["--upstream", $"127.0.0.1:{LoopbackPorts.Free()},127.0.0.1:{LoopbackPorts.Free()}", "--cache", dir.File("cache-2"), "--reattach-timeout", "120", .. stranger]);
        await using (listening)
        {
            await using var sink = RelayChainTests.StartSink(dir, "store", $"127.0.0.1:{port}");
            Assert.Equal(1, await sink.WaitAsync(ExitGuard));
            var line = Assert.Single(sink.FailureLines);
            Assert.Contains("CA", line, StringComparison.Ordinal);
        }
    }
}
