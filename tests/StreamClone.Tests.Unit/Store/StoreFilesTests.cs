using System.Runtime.Versioning;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Store;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

/// <summary>What the store does to the files it keeps: who may read them, and that a read-only open touches none.</summary>
[SupportedOSPlatform("linux")]
public sealed class StoreFilesTests : IDisposable
{
    private const int HeaderSize = 16;
    private const int RecordSize = 48;
    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Every_file_the_store_creates_is_0600_and_every_directory_0700()
    {
        await FillAsync();
        _temp.Store.Dispose();
        // A recovery writes the most kinds of file: the corrupt copy and a rebuilt journal.
        FlipByte(_temp.JournalPath("s1"), HeaderSize + 5);
        _temp.Reopen();
        Assert.NotNull(_temp.Store.GetSnapshot("s1")!.JournalDamage);
        Assert.Contains(Directory.EnumerateFiles(_temp.Directory, "*", SearchOption.AllDirectories),
            f => Path.GetFileName(f).StartsWith("journal.log.corrupt-", StringComparison.Ordinal));

        AssertPrivate(_temp.Directory);
    }

    [Fact]
    public async Task A_store_left_readable_by_an_older_build_is_made_private_on_open()
    {
        await FillAsync();
        _temp.Store.Dispose();
        foreach (var entry in Directory.EnumerateFileSystemEntries(_temp.Directory, "*", SearchOption.AllDirectories).Append(_temp.Directory))
        {
            File.SetUnixFileMode(entry, Directory.Exists(entry) ? (UnixFileMode)0b111_101_101 : (UnixFileMode)0b110_100_100);
        }

        _temp.Reopen();

        AssertPrivate(_temp.Directory);
    }

    [Fact]
    public async Task A_read_only_open_reports_damage_and_changes_no_byte()
    {
        await FillAsync();
        _temp.Store.Dispose();
        FlipByte(_temp.JournalPath("s1"), HeaderSize + RecordSize + 3);   // damage in the middle
        using (var file = File.OpenWrite(_temp.JournalPath("s2")))
        {
            file.SetLength(file.Length - 5);                                 // a torn tail
        }
        Directory.CreateDirectory(Path.Combine(_temp.Directory, "snapshots", "half")); // an interrupted creation
        var before = Fingerprint(_temp.Directory);

        using (var store = ChunkStore.OpenReadOnly(_temp.Directory, NullLogger.Instance))
        {
            Assert.True(store.IsReadOnly);
            var s1 = store.GetSnapshot("s1")!;
            Assert.Equal(3, s1.PresentChunks);
            Assert.Contains("read-only", s1.JournalDamage, StringComparison.Ordinal);
            Assert.Equal(3, store.GetSnapshot("s2")!.PresentChunks);
            Assert.True(store.GetSnapshot("s3")!.IsComplete);
            Assert.Equal(Data(5, Page), ReadChunk(s1, 0, 3));
            Assert.True((await store.VerifyAsync(TestContext.Current.CancellationToken)).IsClean);
            Assert.Throws<InvalidOperationException>(() => store.OpenSnapshot(Offer("s9", (0, Page, Page))));
            Assert.Throws<InvalidOperationException>(() => Put(s1, 0, 1, 2));
        }

        Assert.Equal(before, Fingerprint(_temp.Directory));
    }

    [Fact]
    public void A_read_only_open_of_a_missing_store_creates_nothing()
    {
        var missing = Path.Combine(_temp.Directory, "nothing-here");
        Assert.Throws<DirectoryNotFoundException>(() => ChunkStore.OpenReadOnly(missing, NullLogger.Instance));
        Assert.False(Directory.Exists(missing));
    }

    /// <summary>s1: 4 data chunks; s2: 4 data chunks; s3: complete (2 chunks); all flushed.</summary>
    private async Task FillAsync()
    {
        var ct = TestContext.Current.CancellationToken;
        foreach (var id in new[] { "s1", "s2" })
        {
            var snapshot = _temp.Store.OpenSnapshot(Offer(id, (0, 8 * Page, Page)));
            for (var i = 0; i < 4; i++)
            {
                Put(snapshot, 0, i, i + 2);
            }
            await snapshot.FlushAsync(ct);
        }
        var s3 = _temp.Store.OpenSnapshot(Offer("s3", (0, 2 * Page, Page)));
        var hashes = new[] { Put(s3, 0, 0, 1), Put(s3, 0, 1, 2) };
        await s3.CompleteAsync([Root(hashes)], ct);
    }

    private static void AssertPrivate(string root)
    {
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(root));
        var entries = Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).ToList();
        Assert.Contains(entries, e => e.EndsWith("manifest.msgpack", StringComparison.Ordinal));
        Assert.All(entries, entry =>
        {
            var mode = File.GetUnixFileMode(entry);
            Assert.True((mode & GroupOrOther) == 0, $"{entry} is {Convert.ToString((int)mode, 8)}");
            Assert.Equal(Directory.Exists(entry) ? UnixFileMode.UserExecute : 0, mode & UnixFileMode.UserExecute);
        });
    }

    /// <summary>Every entry's path, mode, length and content hash, plus modification time.</summary>
    private static List<string> Fingerprint(string root) =>
        [.. Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(entry =>
            Directory.Exists(entry)
                ? $"{entry} dir {File.GetUnixFileMode(entry)}"
                : $"{entry} {File.GetUnixFileMode(entry)} {new FileInfo(entry).Length} {File.GetLastWriteTimeUtc(entry):O} {Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(entry)))}")];

    private static void FlipByte(string path, long offset)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        file.Position = offset;
        var b = file.ReadByte();
        file.Position = offset;
        file.WriteByte((byte)(b ^ 0x40));
    }
}
