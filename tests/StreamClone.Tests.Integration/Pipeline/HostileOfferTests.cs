using System.Buffers;
using System.Net;
using System.Text.Json;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// A hand-made source (<see cref="HostileSource"/>, plain TCP, so its sinks run <c>--insecure</c>: the lies under
/// test are in the frames, which TLS would carry unchanged from a peer holding a cluster certificate) against the
/// real sink process: offers of any
/// size, decompression bombs, and what the sink tells a source it holds.
/// </summary>
public class HostileOfferTests
{
    private static readonly TimeSpan ExitGuard = TimeSpan.FromMinutes(2);

    private static SnapshotOfferMessage Offer(string id, params (ObjectKind Kind, long Size, int ChunkSize)[] objects) => new()
    {
        SnapshotId = id,
        CreatedUtc = new DateTime(2026, 11, 30, 8, 0, 0, DateTimeKind.Utc),
        Origin = "hostile-test",
        Objects = [.. objects.Select((o, i) => new ObjectInfo { Id = i, Name = $"obj{i}", Kind = o.Kind, Size = o.Size, ChunkSize = o.ChunkSize })],
    };

    /// <summary>
    /// The sink ended with exactly one line on stderr (its log's or the CLI's) and no stack trace, besides the
    /// warning that <c>--insecure</c> prints at start.
    /// </summary>
    private static string AssertOneLine(RunningProcess sink)
    {
        var lines = sink.StderrLines.Where(l => !l.Contains("--insecure: this node runs plain TCP", StringComparison.Ordinal)).ToArray();
        Assert.True(lines.Length == 1, $"expected one stderr line, got {lines.Length}:\n{sink.Stderr}");
        return lines[0];
    }

    private static async Task AssertStoreEmptyAsync(string store)
    {
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(store, "snapshots")));
        await using var inspect = StreamCloneProcess.Start("inspect", "--store", store, "--json");
        Assert.Equal(0, await inspect.WaitAsync(ExitGuard));
        using var json = JsonDocument.Parse(inspect.LastLine);
        Assert.Equal(0, json.RootElement.GetProperty("snapshots").GetArrayLength());
    }

    public static TheoryData<string, long, ObjectKind, ProtocolError> HostileOffers => new()
    {
        // 10 TB: over the store's default limit (and this machine's disk).
        { "ten-tb", 10_000_000_000_000, ObjectKind.Memory, ProtocolError.OfferRefused },
        // long.MaxValue: more chunks than an object may have, before any arithmetic on it.
        { "long-max", long.MaxValue, ObjectKind.Memory, ProtocolError.MalformedHeader },
        // A device-state object is read whole by restore: 1 GiB is past its one limit.
        { "device-1g", 1L << 30, ObjectKind.DeviceState, ProtocolError.MalformedHeader },
    };

    [Theory]
    [MemberData(nameof(HostileOffers))]
    public async Task An_offer_past_the_limits_is_refused_with_one_line_and_leaves_nothing_in_the_store(string id, long size, ObjectKind kind, ProtocolError expected)
    {
        using var dir = new TempDir();
        var store = dir.File("store");
        await using var source = new HostileSource(IPAddress.Loopback, Offer(id, (kind, size, 4096)));
        await using var sink = StreamCloneProcess.Start("sink", "--connect", source.Connect, "--store", store, "--json", "--insecure");

        Assert.Equal(1, await sink.WaitAsync(ExitGuard));
        Assert.Contains(expected.ToString(), AssertOneLine(sink), StringComparison.Ordinal);
        await source.BulkEnded;
        Assert.Equal(expected, source.ErrorReceived?.Code);
        Assert.Null(source.Inventory);
        await AssertStoreEmptyAsync(store);
    }

    [Fact]
    public async Task A_1_TiB_offer_under_a_4_GiB_heap_limit_is_refused_without_an_abort()
    {
        using var dir = new TempDir();
        var store = dir.File("store");
        await using var source = new HostileSource(IPAddress.Loopback, Offer("one-tib", (ObjectKind.Memory, 1L << 40, 4096)));
        // The default node limit (2 TiB) allows it: only free space (or memory) can stand in the way.
        await using var sink = StreamCloneProcess.Start(new Dictionary<string, string> { ["DOTNET_GCHeapHardLimit"] = "0x100000000" },
            "sink", "--connect", source.Connect, "--store", store, "--json", "--insecure");

        var exited = sink.WaitAsync(ExitGuard);
        if (await Task.WhenAny(exited, source.InventoryReceived) == source.InventoryReceived && source.Inventory is not null)
        {
            // A disk with more than 1 TiB free takes the offer: the sink must then hold it, waiting for chunks, not abort.
            Assert.False(sink.HasExited, sink.Stderr);
            sink.Kill();
            return;
        }
        var exit = await exited;
        Assert.True(exit == 1, $"exit {exit}:\n{sink.Stderr}");
        Assert.Contains(nameof(ProtocolError.OfferRefused), AssertOneLine(sink), StringComparison.Ordinal);
        await AssertStoreEmptyAsync(store);
    }

    [Fact]
    public async Task Decompression_bombs_are_refused_with_one_line_in_bounded_memory()
    {
        using var dir = new TempDir();
        var store = dir.File("store");
        // Four batches, each claiming 1024 4-KiB Data chunks and ~2 GiB raw, with a 66 KB payload.
        var payload = new byte[66_000];
        Random.Shared.NextBytes(payload);
        var source = new HostileSource(IPAddress.Loopback, Offer("bomb", (ObjectKind.Memory, 64L << 20, 4096)))
        {
            BulkFrames = (writer, output) =>
            {
                for (var b = 0; b < 4; b++)
                {
                    var kinds = Enumerable.Repeat((byte)ChunkEntryKind.Data, BatchLayout.MaxChunksPerBatch).ToArray();
                    writer.Write(output, FrameType.ChunkBatch, new ChunkBatchMessage
                    {
                        Sequence = b + 1,
                        ObjectId = 0,
                        FirstIndex = b * (long)BatchLayout.MaxChunksPerBatch,
                        Kinds = kinds,
                        Hashes = new byte[kinds.Length * ChunkHash.Size],
                        Codec = PayloadCodec.Zstd,
                        RawLength = int.MaxValue - 64,
                    }, payload);
                }
                return Task.CompletedTask;
            },
        };
        await using (source)
        {
            // 512 MiB of heap: one bomb honoured (2 GiB) would end in an out-of-memory abort.
            await using var sink = StreamCloneProcess.Start(new Dictionary<string, string> { ["DOTNET_GCHeapHardLimit"] = "0x20000000" },
                "sink", "--connect", source.Connect, "--store", store, "--parallelism", "4", "--json", "--insecure");
            var exit = await sink.WaitAsync(ExitGuard);
            Assert.True(exit == 1, $"exit {exit}:\n{sink.Stderr}");
            Assert.Contains(nameof(ProtocolError.MalformedHeader), AssertOneLine(sink), StringComparison.Ordinal);
            await source.BulkEnded;
            Assert.Equal(ProtocolError.MalformedHeader, source.ErrorReceived?.Code);
        }
    }

    /// <summary>
    /// Waits for the sink's inventory at <paramref name="source"/>; a sink that exits first (it could not
    /// connect, or refused the source) fails the test with its stderr instead of leaving it waiting forever.
    /// </summary>
    private static async Task InventoryOrExitAsync(HostileSource source, RunningProcess sink)
    {
        var first = await Task.WhenAny(source.InventoryReceived, sink.Exited).WaitAsync(ExitGuard);
        Assert.True(first == source.InventoryReceived, $"the sink exited before sending its inventory:\n{sink.Stderr}");
    }

    [Fact]
    public async Task A_source_learns_only_hashes_of_snapshots_from_its_own_upstream()
    {
        using var dir = new TempDir();
        var store = dir.File("store");
        var image = await TestImages.MemoryAsync(dir, "mem.img", 4 << 20, seed: 31);
        var (real, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1");
        await using (real)
        {
            await using var first = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json");
            Assert.True(await first.WaitAsync(ExitGuard) == 0, first.Stderr);
        }

        // Another host (127.0.0.2 is loopback too, but another address than the one the user trusted first).
        await using (var stranger = new HostileSource(IPAddress.Parse("127.0.0.2"), Offer("stranger", (ObjectKind.Memory, 1 << 20, 4096))))
        {
            await using var sink = StreamCloneProcess.Start("sink", "--connect", stranger.Connect, "--store", store, "--json", "--insecure");
            await InventoryOrExitAsync(stranger, sink);
            Assert.NotNull(stranger.Inventory);
            Assert.Empty(stranger.Inventory);
            sink.Kill();
        }

        // The same host on a new port is the same upstream: it learns what it sent, so unchanged chunks are not sent again.
        await using (var same = new HostileSource(IPAddress.Loopback, Offer("same", (ObjectKind.Memory, 1 << 20, 4096))))
        {
            await using var sink = StreamCloneProcess.Start("sink", "--connect", same.Connect, "--store", store, "--json", "--insecure");
            await InventoryOrExitAsync(same, sink);
            Assert.NotNull(same.Inventory);
            Assert.NotEmpty(same.Inventory);
            sink.Kill();
        }
    }
}
