using Spectre.Console;
using StreamClone.Source.Server;
using StreamClone.Store.Upstream;

namespace StreamClone.Host;

/// <summary>Spectre.Console progress bars for long transfers (only on an interactive terminal).</summary>
internal static class ProgressView
{
    private static Progress Create() => AnsiConsole.Progress()
        .AutoClear(false)
        .HideCompleted(false)
        .Columns(
            new TaskDescriptionColumn(),
            new ProgressBarColumn(),
            new PercentageColumn(),
            new DownloadedColumn(),
            new TransferSpeedColumn(),
            new RemainingTimeColumn(),
            new SpinnerColumn());

    public static Task ShowSinkAsync(UpstreamSession session, Task work) => Create().StartAsync(async ctx =>
    {
        var total = session.Snapshot.Objects.Sum(o => o.Size);
        var task = ctx.AddTask($"sink {session.Snapshot.SnapshotId[..8]}", maxValue: Math.Max(1, total));
        while (!work.IsCompleted)
        {
            Update(task, session);
            await Task.WhenAny(work, Task.Delay(200));
        }
        Update(task, session);
    });

    private static void Update(ProgressTask task, UpstreamSession session)
    {
        var covered = session.Stats.CoveredBytes;
        var ratio = covered == 0 ? 0 : 100.0 * session.WireBytes / covered;
        task.Value = covered;
        task.Description = $"sink {session.Snapshot.SnapshotId[..8]}: {session.Snapshot.PresentChunks}/{session.Snapshot.TotalChunks} chunks, wire {ratio:F0}%";
    }

    public static Task ShowSourceAsync(SourceServer server, long snapshotBytes, Task work) => Create().StartAsync(async ctx =>
    {
        var tasks = new Dictionary<string, ProgressTask>();
        while (!work.IsCompleted)
        {
            foreach (var session in server.ActiveSessions)
            {
                if (!tasks.TryGetValue(session.SessionId, out var task))
                {
                    tasks[session.SessionId] = task = ctx.AddTask($"session {session.SessionId[..8]}", maxValue: Math.Max(1, snapshotBytes));
                }
                var s = session.Stats;
                task.Value = s.InputBytes;
                var ratio = s.InputBytes == 0 ? 0 : 100.0 * s.PayloadBytes / s.InputBytes;
                task.Description = $"session {session.SessionId[..8]}: {s.Chunks} chunks, {s.ZeroChunks} zero, {s.KnownChunks} known, payload {ratio:F0}%, {s.DemandRequests} demand";
            }
            await Task.WhenAny(work, Task.Delay(200));
        }
        foreach (var task in tasks.Values)
        {
            task.Value = task.MaxValue;
        }
    });
}
