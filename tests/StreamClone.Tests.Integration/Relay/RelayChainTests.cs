using System.Text.Json;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Relay;

/// <summary>
/// Relays in a chain (issue 8 "Tree", "Demand requests", "Failure"): real source, relay and sink processes over loopback,
/// mutual TLS (the default PKI of the test run).
/// </summary>
public class RelayChainTests
{
    private static readonly TimeSpan ExitGuard = TimeSpan.FromMinutes(3);

    private static string CopyPath(RunningProcess sink) =>
        JsonDocument.Parse(sink.LastLine).RootElement.GetProperty("objects")[0].GetProperty("path").GetString()!;

    /// <summary>Starts `relay` on an ephemeral port and returns once it listens.</summary>
    internal static async Task<(RunningProcess Process, int Port)> StartRelayAsync(string workDir, params string[] args)
    {
        var portFile = Path.Combine(workDir, $"port-{Guid.NewGuid():N}");
        var process = StreamCloneProcess.Start(["relay", "--listen", "127.0.0.1:0", "--port-file", portFile, "--json", .. args]);
        try
        {
            return (process, await PortFile.WaitAsync(portFile, process, TimeSpan.FromSeconds(60)));
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    internal static RunningProcess StartSink(TempDir dir, string name, string connect, params string[] args) =>
        StreamCloneProcess.Start(["sink", "--connect", connect, "--store", dir.File(name), "--json", "--log-level", "Information", .. args]);

    [Fact]
    public async Task Source_relay_relay_three_sinks_and_a_late_joiner_all_end_identical()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 32 << 20, seed: 91);
        var expected = await File.ReadAllBytesAsync(image);
        var (source, sourcePort) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using var _ = source;
        var (a, aPort) = await StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{sourcePort}", "--cache", dir.File("cache-a"), "--sessions", "1", "--log-level", "Information");
        await using var __ = a;
        var (b, bPort) = await StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{aPort}", "--cache", dir.File("cache-b"), "--sessions", "4", "--log-level", "Information");
        await using var ___ = b;

        var sinks = new List<RunningProcess>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                sinks.Add(StartSink(dir, $"store-{i}", $"127.0.0.1:{bPort}"));
            }
            foreach (var sink in sinks)
            {
                Assert.True(await sink.WaitAsync(ExitGuard) == 0, sink.Stderr);
                Assert.Equal(expected, await File.ReadAllBytesAsync(CopyPath(sink)));
            }
            // B has the whole snapshot now; a child that joins after the others finished reads it from B's log and cache.
            await using var late = StartSink(dir, "store-late", $"127.0.0.1:{bPort}");
            Assert.True(await late.WaitAsync(ExitGuard) == 0, late.Stderr);
            Assert.Equal(expected, await File.ReadAllBytesAsync(CopyPath(late)));

            Assert.True(await b.WaitAsync(ExitGuard) == 0, b.Stderr);
            Assert.True(await a.WaitAsync(ExitGuard) == 0, a.Stderr);
            Assert.Equal(0, await source.WaitAsync(ExitGuard));
            using var summary = JsonDocument.Parse(b.LastLine);
            Assert.True(summary.RootElement.GetProperty("upstream_complete").GetBoolean(), b.LastLine);
            Assert.Equal(4, summary.RootElement.GetProperty("children_completed").GetInt32());
        }
        finally
        {
            foreach (var sink in sinks)
            {
                await sink.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Two sinks below B probe the same 40 random chunks (the probe's fixed seed) while the bulk stream runs: every read
    /// is answered (B from its cache, or by asking A through its session), and because B merges concurrent requests for
    /// a chunk, A answers at most one request per chunk: at most 40, where unmerged requests could reach 80.
    /// </summary>
    [Fact]
    public async Task Demand_from_two_sinks_two_relays_below_is_answered_and_merged_per_chunk()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 64 << 20, seed: 95);
        var expected = await File.ReadAllBytesAsync(image);
        var (source, sourcePort) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using var _ = source;
        var (a, aPort) = await StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{sourcePort}", "--cache", dir.File("cache-a"), "--sessions", "1");
        await using var __ = a;
        var (b, bPort) = await StartRelayAsync(dir.Path, "--upstream", $"127.0.0.1:{aPort}", "--cache", dir.File("cache-b"), "--sessions", "2");
        await using var ___ = b;

        const int Reads = 40;
        await using var first = StartSink(dir, "store-1", $"127.0.0.1:{bPort}", "--probe-reads", $"{Reads}", "--probe-spacing-ms", "1");
        await using var second = StartSink(dir, "store-2", $"127.0.0.1:{bPort}", "--probe-reads", $"{Reads}", "--probe-spacing-ms", "1");
        foreach (var sink in new[] { first, second })
        {
            Assert.True(await sink.WaitAsync(ExitGuard) == 0, sink.Stderr);
            Assert.Equal(expected, await File.ReadAllBytesAsync(CopyPath(sink)));
            using var summary = JsonDocument.Parse(sink.LastLine);
            Assert.Equal(Reads, summary.RootElement.GetProperty("demand_reads").GetInt32());
        }
        Assert.True(await b.WaitAsync(ExitGuard) == 0, b.Stderr);
        Assert.True(await a.WaitAsync(ExitGuard) == 0, a.Stderr);
        using var atA = JsonDocument.Parse(a.LastLine);
        var requestsAtA = atA.RootElement.GetProperty("demand_requests").GetInt64();
        Assert.InRange(requestsAtA, 1, Reads);
        Assert.Equal(0, await source.WaitAsync(ExitGuard));
    }
}
