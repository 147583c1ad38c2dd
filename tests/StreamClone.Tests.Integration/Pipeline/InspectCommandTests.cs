using System.Runtime.Versioning;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>`streamclone inspect --store` as a process: it reports a store, damage included, without changing it.</summary>
[SupportedOSPlatform("linux")]
public sealed class InspectCommandTests
{
    private const int Page = 4096;
    private const int JournalHeader = 16;
    private const int JournalRecord = 48;

    [Fact]
    public async Task Inspect_of_a_damaged_store_reports_it_and_changes_no_byte()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var storePath = dir.File("store");
        using (var store = ChunkStore.Open(storePath, NullLogger.Instance))
        {
            var snapshot = store.OpenSnapshot(new SnapshotOfferMessage
            {
                SnapshotId = "s1",
                CreatedUtc = DateTime.UtcNow,
                Origin = "inspect-test",
                Objects = [new ObjectInfo { Id = 0, Name = "ram", Kind = ObjectKind.Memory, Size = 16 * Page, ChunkSize = Page }],
            });
            for (var i = 0; i < 16; i++)
            {
                var data = new byte[Page];
                new Random(i).NextBytes(data);
                snapshot.PutData(0, i, ChunkHash.Compute(data), data);
            }
            await snapshot.FlushAsync(ct);
        }
        var journal = Path.Combine(storePath, "snapshots", "s1", "journal.log");
        var bytes = await File.ReadAllBytesAsync(journal, ct);
        bytes[JournalHeader + (3 * JournalRecord) + 9] ^= 0x10;
        await File.WriteAllBytesAsync(journal, bytes, ct);
        var before = Fingerprint(storePath);

        await using var inspect = StreamCloneProcess.Start("inspect", "--store", storePath, "--json");
        var exit = await inspect.WaitAsync(TimeSpan.FromMinutes(2));

        Assert.True(exit == 0, $"exit {exit}: {inspect.Stderr}");
        Assert.Contains("damaged at byte " + (JournalHeader + (3 * JournalRecord)), inspect.Stdout, StringComparison.Ordinal);
        Assert.Equal(before, Fingerprint(storePath));
    }

    private static List<string> Fingerprint(string root) =>
        [.. Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(entry =>
            Directory.Exists(entry)
                ? $"{entry} dir {File.GetUnixFileMode(entry)}"
                : $"{entry} {File.GetUnixFileMode(entry)} {File.GetLastWriteTimeUtc(entry):O} {Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(entry)))}")];
}
