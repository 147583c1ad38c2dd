using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Spectre.Console;
using StreamClone.Shared.Model;
using StreamClone.Store;

namespace StreamClone.Host.Commands;

internal static class InspectCommand
{
    public static Command Create()
    {
        var store = new Option<string?>("--store") { Description = "A sink store: its snapshots (complete or partial) and totals." };
        var manifest = new Option<string?>("--manifest") { Description = "A manifest file (manifest.msgpack): its objects, chunking and root hashes." };
        var verify = new Option<bool>("--verify") { Description = "With --store: re-hash every stored chunk and report any that no longer match." };
        var json = CommonOptions.Json();
        var command = new Command("inspect", "Show a snapshot's manifest or a store's state.") { store, manifest, verify, json };
        command.SetAction(async (r, ct) =>
        {
            var asJson = r.GetValue(json);
            if (r.GetValue(manifest) is { } manifestPath)
            {
                SnapshotManifest m;
                await using (var manifestFile = File.OpenRead(manifestPath))
                {
                    m = SnapshotManifest.Deserialize(manifestFile);
                }
                var objects = m.Objects.Select(o => new
                {
                    o.Id,
                    o.Name,
                    Kind = o.Kind.ToString(),
                    o.Size,
                    o.ChunkSize,
                    Chunks = o.ChunkCount,
                    ZeroChunks = CountZero(o),
                    RootHash = o.ComputeRootHash().ToString(),
                }).ToList();
                if (asJson)
                {
                    Console.WriteLine(JsonSerializer.Serialize(new { m.SnapshotId, m.CreatedUtc, m.Origin, m.FormatVersion, m.HashAlgorithm, objects }, HostServices.Json));
                    return 0;
                }
                var table = new Table().Title($"snapshot {m.SnapshotId} ({m.CreatedUtc:u}, {Markup.Escape(m.Origin)})")
                    .AddColumns("id", "name", "kind", "size", "chunk", "chunks", "zero", "root hash");
                foreach (var o in objects)
                {
                    table.AddRow($"{o.Id}", Markup.Escape(o.Name), o.Kind, $"{o.Size:N0}", $"{o.ChunkSize}", $"{o.Chunks:N0}", $"{o.ZeroChunks:N0}", o.RootHash[..16] + "…");
                }
                AnsiConsole.Write(table);
                return 0;
            }
            if (r.GetValue(store) is not { } storePath)
            {
                Console.Error.WriteLine("inspect: give --store DIR or --manifest FILE");
                return 2;
            }
            if (!Directory.Exists(storePath))
            {
                Console.Error.WriteLine($"inspect: no store at {storePath}");
                return 1;
            }
            // Read-only: looking at a store (even a damaged one, even beside a running sink) changes no byte of it.
            using var chunkStore = ChunkStore.OpenReadOnly(storePath, NullLogger.Instance);
            var snapshots = chunkStore.ListSnapshots();
            var stats = chunkStore.GetStatistics();
            StoreVerifyReport? report = r.GetValue(verify) ? await chunkStore.VerifyAsync(ct) : null;
            if (asJson)
            {
                Console.WriteLine(JsonSerializer.Serialize(new { statistics = stats, snapshots, verify = report }, HostServices.Json));
                return report is { IsClean: false } ? 1 : 0;
            }
            var list = new Table().Title($"store {Markup.Escape(Path.GetFullPath(storePath))}")
                .AddColumns("snapshot", "created", "state", "object", "kind", "size", "present / total chunks", "zero");
            foreach (var s in snapshots)
            {
                foreach (var o in s.Objects)
                {
                    list.AddRow(s.SnapshotId, $"{s.CreatedUtc:u}", s.IsComplete ? "[green]complete[/]" : "[yellow]partial[/]", Markup.Escape(o.Name),
                        o.Kind.ToString(), $"{o.Size:N0}", $"{o.PresentChunks:N0} / {o.TotalChunks:N0}", $"{o.ZeroChunks:N0}");
                }
            }
            AnsiConsole.Write(list);
            foreach (var s in snapshots.Where(s => s.JournalDamage is not null))
            {
                AnsiConsole.MarkupLine($"[red]{Markup.Escape(s.SnapshotId)}: {Markup.Escape(s.JournalDamage!)}[/]");
            }
            AnsiConsole.MarkupLine($"{stats.Snapshots} snapshots ({stats.CompleteSnapshots} complete), {stats.ChunksHeld:N0} chunks held, " +
                $"{stats.UniqueHashes:N0} unique hashes, {stats.BytesOnDisk:N0} bytes on disk");
            if (stats.MaxCacheBytes is { } cacheBound)
            {
                AnsiConsole.MarkupLine($"cache: {stats.CacheBytes:N0} of {cacheBound:N0} bytes (least recently used snapshots are evicted beyond that)");
            }
            if (report is not null)
            {
                AnsiConsole.MarkupLine(report.IsClean
                    ? $"[green]verify: all {report.ChunksChecked:N0} chunks match their hashes[/]"
                    : $"[red]verify: {report.Faults.Count} of {report.ChunksChecked:N0} chunks no longer match[/]");
                foreach (var fault in report.Faults.Take(20))
                {
                    AnsiConsole.MarkupLine($"  {fault.SnapshotId} object {fault.ObjectId} chunk {fault.Index}: expected {fault.Expected.ToShortString()}…");
                }
            }
            return report is { IsClean: false } ? 1 : 0;
        });
        return command;
    }

    private static long CountZero(ManifestObject o)
    {
        long zero = 0;
        for (long i = 0; i < o.ChunkCount; i++)
        {
            if (o.GetHash(i).IsZeroMark)
            {
                zero++;
            }
        }
        return zero;
    }
}
