using Microsoft.Extensions.Logging;
using StreamClone.Qemu;
using StreamClone.Shared;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Source.Server;

namespace StreamClone.Source.Live;

/// <summary>What a live source is told: which VM, where its state may go, and the snapshot's identity.</summary>
public sealed record LiveSourceSettings
{
    /// <summary>The running VM's QMP socket.</summary>
    public required string QmpSocketPath { get; init; }

    /// <summary>Snapshot id (<see cref="WireLimits.SnapshotIdRule"/>); a sink resumes a snapshot with the same id.</summary>
    public required string SnapshotId { get; init; }

    /// <summary>
    /// Where the RAM pages, the disks' scratch images and QEMU's sockets go. Null: a new private directory that goes
    /// when the source ends. Given: claimed by <see cref="LiveWorkDirectory.Claim"/> (created 0700 and later removed
    /// when missing; kept when it exists, and refused unless it is ours and private).
    /// </summary>
    public string? WorkDirectory { get; init; }

    public int ChunkSize { get; init; } = ChunkMath.PageSize;

    /// <summary>
    /// How long the offer may take once the VM was snapshotted: QEMU sends the RAM block list first thing, so only a
    /// QEMU that stopped sending takes this long; the source then ends instead of listening with nothing to offer.
    /// </summary>
    public TimeSpan OfferTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// After the snapshot failed, how long sessions still running get to tell their sinks why (they hit the failed
    /// input at once) before the server stops them without a word.
    /// </summary>
    public TimeSpan FailureGrace { get; init; } = TimeSpan.FromSeconds(3);
}

/// <summary>What a live source reports once its snapshot is complete.</summary>
public sealed record LiveSourceSummary(long? DowntimeMs, double StopToRestartMs, long? MigrationMs, long MemoryBytes, long DiskBytes);

/// <summary>
/// The lifecycle policy of a live (QMP) source, from start to exit, so the CLI only parses and renders:
/// <list type="bullet">
/// <item><b>Start</b> (<see cref="StartAsync"/>): a missing QMP socket is named before anything is created; the work
/// directory is claimed or created; QMP is connected; the snapshot is taken (the VM's pause); the offer must be known
/// within <see cref="LiveSourceSettings.OfferTimeout"/>. A failure on the way undoes what was done, in reverse (the
/// snapshot recovers the VM and removes its disk views, QMP is closed, a work directory made for it is removed) and
/// ends with one error: the snapshot's own when it failed, which names the VM and what QEMU said.</item>
/// <item><b>Serve</b> (<see cref="ServeAsync(SourceServer, CancellationTokenSource)"/>): a snapshot that fails while sinks are served stops the server
/// after <see cref="LiveSourceSettings.FailureGrace"/> (no later sink may be served a snapshot that cannot
/// complete), and its error ends the serving even when every session ended well.</item>
/// <item><b>Exit</b> (<see cref="DisposeAsync"/>; normal end, Ctrl+C/SIGTERM through the token, or failure): a
/// snapshot still streaming is ended and the VM recovered, the disk views are released (the VM's block graph is as
/// before), QMP is closed and a work directory made for this source is removed.</item>
/// </list>
/// </summary>
public sealed class LiveSource : IAsyncDisposable
{
    private readonly LiveWorkDirectory _workDirectory;
    private readonly QmpClient _qmp;
    private readonly TimeSpan _failureGrace;

    private LiveSource(LiveWorkDirectory workDirectory, QmpClient qmp, LiveVmSnapshot snapshot, TimeSpan failureGrace)
    {
        _workDirectory = workDirectory;
        _qmp = qmp;
        Snapshot = snapshot;
        _failureGrace = failureGrace;
    }

    /// <summary>The snapshot being offered (its offer is known once <see cref="StartAsync"/> returned).</summary>
    public LiveSnapshotInput Input => Snapshot.Input;

    public LiveVmSnapshot Snapshot { get; }

    /// <summary>The work directory in use (the RAM pages and the disks' scratch images are there).</summary>
    public string WorkDirectory => _workDirectory.Path;

    /// <summary>Snapshots the VM behind <see cref="LiveSourceSettings.QmpSocketPath"/> and returns once its offer is known.</summary>
    public static async Task<LiveSource> StartAsync(LiveSourceSettings settings, ILogger logger, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(logger);
        // Our own mistakes are named before the VM is touched (the snapshot itself would stop the VM first).
        WireLimits.ThrowIfInvalidSnapshotId(settings.SnapshotId);
        ChunkMath.ValidateChunkSize(settings.ChunkSize);
        if (!File.Exists(settings.QmpSocketPath))
        {
            // connect(2) says "Cannot assign requested address" for a missing path: name the real problem.
            throw new FileNotFoundException(
                $"QMP socket {settings.QmpSocketPath} does not exist (start QEMU with -qmp unix:{settings.QmpSocketPath},server=on,wait=off)",
                settings.QmpSocketPath);
        }
        var workDirectory = settings.WorkDirectory is { } given ? LiveWorkDirectory.Claim(given) : LiveWorkDirectory.CreateDefault();
        QmpClient? qmp = null;
        LiveVmSnapshot? snapshot = null;
        try
        {
            qmp = await QmpClient.ConnectAsync(settings.QmpSocketPath, null, logger, ct);
            snapshot = await LiveVmSnapshot.StartAsync(qmp, workDirectory.Path, settings.ChunkSize, settings.SnapshotId, logger, ct);
            try
            {
                await snapshot.Input.OfferReady.WaitAsync(settings.OfferTimeout, ct);
            }
            catch (LiveSnapshotException)
            {
                // The snapshot's own error names the VM and what QEMU said, and comes once the VM is recovered.
                await snapshot.Completion;
                throw;
            }
            catch (TimeoutException)
            {
                throw new TimeoutException(
                    $"the VM behind {settings.QmpSocketPath} sent no RAM block list within {settings.OfferTimeout.TotalSeconds:F0} s of its snapshot");
            }
            return new LiveSource(workDirectory, qmp, snapshot, settings.FailureGrace);
        }
        catch
        {
            if (snapshot is not null)
            {
                await snapshot.DisposeAsync();
            }
            if (qmp is not null)
            {
                await qmp.DisposeAsync();
            }
            workDirectory.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs <paramref name="server"/> (which offers <see cref="Input"/>) until <paramref name="stop"/> is cancelled,
    /// or the snapshot failed and the server was stopped; then ends with the snapshot's failure, if any.
    /// </summary>
    public Task ServeAsync(SourceServer server, CancellationTokenSource stop) =>
        ServeAsync(server, Snapshot.Completion, stop, _failureGrace);

    /// <summary>The policy of <see cref="ServeAsync(SourceServer, CancellationTokenSource)"/> for any snapshot completion (tests drive it directly).</summary>
    internal static async Task ServeAsync(SourceServer server, Task snapshotCompletion, CancellationTokenSource stop, TimeSpan failureGrace)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentNullException.ThrowIfNull(snapshotCompletion);
        ArgumentNullException.ThrowIfNull(stop);
        var run = server.RunAsync(stop.Token);
        var watch = StopWhenFailedAsync(server, snapshotCompletion, stop, failureGrace);
        await run;
        // Rethrows the snapshot's failure (one clear line) even when every session ended well.
        await watch;
        await snapshotCompletion;
    }

    private static async Task StopWhenFailedAsync(SourceServer server, Task snapshotCompletion, CancellationTokenSource stop, TimeSpan grace)
    {
        try
        {
            await snapshotCompletion;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            await SessionsEndedAsync(server, grace);
            await stop.CancelAsync();
        }
    }

    /// <summary>Completes when no session runs any more, or after <paramref name="grace"/>.</summary>
    private static async Task SessionsEndedAsync(SourceServer server, TimeSpan grace)
    {
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnSessionEnded(DownstreamSessionStats _)
        {
            if (!server.ActiveSessions.Any())
            {
                ended.TrySetResult();
            }
        }
        server.SessionEnded += OnSessionEnded;
        try
        {
            // Checked after subscribing: a session that ends in between still wakes us.
            if (!server.ActiveSessions.Any())
            {
                return;
            }
            await ended.Task.WaitAsync(grace);
        }
        catch (TimeoutException)
        {
            // A session that does not end by itself is stopped with the server.
        }
        finally
        {
            server.SessionEnded -= OnSessionEnded;
        }
    }

    /// <summary>The snapshot's figures once it completed (throws its failure otherwise).</summary>
    public async Task<LiveSourceSummary> SummaryAsync()
    {
        var info = await Snapshot.Completion;
        var objects = Input.Offer.Objects;
        return new LiveSourceSummary(
            info.DowntimeMs,
            Math.Round(Snapshot.GuestPause.TotalMilliseconds, 2),
            info.TotalTimeMs,
            objects.Where(o => o.Kind == ObjectKind.Memory).Sum(o => o.Size),
            objects.Where(o => o.Kind == ObjectKind.Disk).Sum(o => o.Size));
    }

    /// <summary>Ends the snapshot (the VM recovered if it was still streaming), releases the disk views, closes QMP and removes a work directory made for this source.</summary>
    public async ValueTask DisposeAsync()
    {
        await Snapshot.DisposeAsync();
        await _qmp.DisposeAsync();
        _workDirectory.Dispose();
    }
}
