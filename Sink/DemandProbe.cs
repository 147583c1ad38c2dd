using System.Diagnostics;

using StreamClone.Store.Upstream;

namespace StreamClone.Sink;

/// <summary>
/// Measures demand latency the way a starting clone sees it: random 4 KiB reads of chunks the bulk
/// stream has not reached yet, issued while it runs at full speed. Reads that find their chunk
/// already present are counted apart (they cost no round trip).
/// </summary>
public sealed class DemandProbe
{
    private readonly List<double> _demandMs = [];

    public int Hits { get; private set; }

    public IReadOnlyList<double> DemandLatenciesMs => _demandMs;

    public Task RunAsync(UpstreamSession session, int reads, TimeSpan spacing, int seed, CancellationToken ct) =>
        RunAsync(session.Snapshot, session.ReadAsync, reads, spacing, seed, ct);

    private async Task RunAsync(Store.SnapshotAssembly snapshot, Func<int, long, Memory<byte>, CancellationToken, ValueTask<int>> read,
        int reads, TimeSpan spacing, int seed, CancellationToken ct)
    {
        var random = new Random(seed);
        var objects = snapshot.Objects.Where(o => o.Size > 0).ToList();
        var buffer = new byte[4096];
        for (var attempts = 0; _demandMs.Count < reads && attempts < reads * 20 && !ct.IsCancellationRequested; attempts++)
        {
            var obj = objects[random.Next(objects.Count)];
            var chunks = (obj.Size + obj.ChunkSize - 1) / obj.ChunkSize;
            var index = random.NextInt64(chunks);
            if (snapshot.IsPresent(obj.Id, index))
            {
                Hits++;
                continue;
            }
            var clock = Stopwatch.StartNew();
            await read(obj.Id, index * obj.ChunkSize, buffer.AsMemory(0, (int)Math.Min(buffer.Length, obj.Size - (index * obj.ChunkSize))), ct);
            _demandMs.Add(clock.Elapsed.TotalMilliseconds);
            if (snapshot.PresentChunks == snapshot.TotalChunks)
            {
                break;
            }
            await Task.Delay(spacing, ct);
        }
    }

    /// <summary>Runs the session's bulk stream to the end with this probe beside it (stopped when the stream ends).</summary>
    public Task<Shared.Model.SnapshotManifest> RunBesideAsync(UpstreamSession session, int reads, TimeSpan spacing, int seed,
        Func<Task<Shared.Model.SnapshotManifest>, Task>? watch, CancellationToken ct) =>
        BesideAsync(session.RunAsync(), stop => reads > 0 ? RunAsync(session, reads, spacing, seed, stop) : Task.CompletedTask, watch, ct);

    /// <summary>
    /// Runs a sink client to the end (reattaching as it must) with this probe beside it, reading through the client
    /// so a read caught by a reattach waits for the next upstream.
    /// </summary>
    public async Task<Shared.Model.SnapshotManifest> RunBesideAsync(UpstreamClient client, int reads, TimeSpan spacing, int seed,
        Func<Task<Shared.Model.SnapshotManifest>, Task>? watch, CancellationToken ct)
    {
        var run = client.RunAsync(ct);
        UpstreamSession first;
        try
        {
            first = await client.FirstSession;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // No upstream connected: the run's own exception is the one to report.
            return await run;
        }
        return await BesideAsync(run, stop => reads > 0 ? RunAsync(first.Snapshot, client.ReadAsync, reads, spacing, seed, stop) : Task.CompletedTask, watch, ct);
    }

    /// <summary>The probe runs until <paramref name="run"/> ends, then stops; the run's result (or failure) is the one returned.</summary>
    private static async Task<Shared.Model.SnapshotManifest> BesideAsync(Task<Shared.Model.SnapshotManifest> run, Func<CancellationToken, Task> probe,
        Func<Task<Shared.Model.SnapshotManifest>, Task>? watch, CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var probing = probe(stop.Token);
        if (watch is not null)
        {
            await watch(run);
        }
        try
        {
            return await run;
        }
        finally
        {
            await stop.CancelAsync();
            try
            {
                await probing;
            }
            catch (Exception ex) when (ex is OperationCanceledException || run.IsFaulted)
            {
                // Stopped with the run, or failed with it (its reason is the one reported).
            }
        }
    }

    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }
        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100.0 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }
}
