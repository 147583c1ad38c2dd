using StreamClone.Shared;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// The command line applies the one snapshot-id rule (<see cref="WireLimits.SnapshotIdRule"/>) while parsing:
/// `source --snapshot-id` and `restore --snapshot` take an id at the edge and refuse one just past it with one line,
/// before a port is opened or a store is looked at.
/// </summary>
public class SnapshotIdOptionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private static readonly string Longest = new('s', WireLimits.MaxSnapshotIdLength);

    [Fact]
    public async Task A_source_offers_an_id_of_the_longest_length_and_the_sink_stores_it_under_that_name()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 1 << 20, seed: 3);
        var (source, port) = await StreamCloneProcess.StartSourceAsync(dir.Path, "--image", image, "--sessions", "1", "--snapshot-id", Longest);
        await using var _ = source;
        await using var sink = StreamCloneProcess.Start("sink", "--connect", $"127.0.0.1:{port}", "--store", dir.File("store"), "--json");

        Assert.True(await sink.WaitAsync(Timeout) == 0, sink.Stderr);
        Assert.Equal(0, await source.WaitAsync(Timeout));
        Assert.True(Directory.Exists(Path.Combine(dir.File("store"), "snapshots", Longest)));
    }

    [Theory]
    [InlineData("source")]
    [InlineData("restore")]
    public async Task An_id_one_character_too_long_or_not_a_plain_name_is_a_usage_error(string command)
    {
        using var dir = new TempDir();
        foreach (var id in new[] { Longest + "s", "..", "a.b", "a/b" })
        {
            string[] args = command == "source"
                ? ["source", "--image", dir.File("none.img"), "--listen", "127.0.0.1:0", "--port-file", dir.File("port"), "--snapshot-id", id]
                : ["restore", "--store", dir.File("store"), "--snapshot", id];
            await using var process = StreamCloneProcess.Start(args);
            Assert.NotEqual(0, await process.WaitAsync(Timeout));
            Assert.Contains($"'{id}' is not a snapshot id ({WireLimits.SnapshotIdRule})", process.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain(" at StreamClone.", process.Stderr, StringComparison.Ordinal);
            Assert.False(File.Exists(dir.File("port")));
            Assert.False(Directory.Exists(dir.File("store")), "a refused id must not open (create) the store");
        }
    }

    [Fact]
    public async Task Restore_takes_an_id_of_the_longest_length_and_looks_it_up()
    {
        using var dir = new TempDir();
        await using var restore = StreamCloneProcess.Start("restore", "--store", dir.File("store"), "--snapshot", Longest);
        Assert.Equal(1, await restore.WaitAsync(Timeout));
        Assert.Equal($"streamclone: the store has no snapshot {Longest}", restore.StderrLines.Last());
    }
}
