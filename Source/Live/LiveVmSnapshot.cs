using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using StreamClone.Qemu;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using StreamClone.Shared.Model;

namespace StreamClone.Source.Live;

/// <summary>
/// A copy-on-write snapshot of a running QEMU VM, taken over QMP and streamed as it is taken:
/// <code>
/// prepare a fleecing view of every writable disk (scratch nodes, VM untouched) → stop → one transaction
/// starts the views (copy-before-write filters; the VM keeps its own disk chain) → migrate with
/// background-snapshot into our Unix socket (QEMU saves device state, write-protects RAM and restarts the
/// VM by itself) → the stream is parsed as it arrives: pages land in <see cref="LiveSnapshotInput"/>, the
/// device region at the end; the disks are read through QEMU's NBD export of the views.
/// </code>
/// The stop makes disk and memory one instant; the guest is paused only from the stop until the
/// snapshot's own restart (<see cref="GuestPause"/>), while RAM streams with the guest running. The disk
/// views live until this object is disposed (the source exits: no sink can ask for a block any more) and
/// are then removed, leaving the VM's block graph as it was.
/// </summary>
public sealed class LiveVmSnapshot : IAsyncDisposable
{
    private readonly QmpClient _qmp;
    private readonly Socket _listener;
    private readonly string _socketPath;
    private readonly CancellationTokenSource _abort;
    private readonly DiskFleece _fleece;
    private readonly ILogger _logger;

    private LiveVmSnapshot(QmpClient qmp, Socket listener, string socketPath, CancellationTokenSource abort, LiveSnapshotInput input, DiskFleece fleece,
        Task<MigrationInfo> completion, TimeSpan pause, ILogger logger)
    {
        _qmp = qmp;
        _listener = listener;
        _socketPath = socketPath;
        _abort = abort;
        _fleece = fleece;
        _logger = logger;
        Input = input;
        Completion = completion;
        GuestPause = pause;
    }

    public LiveSnapshotInput Input { get; }

    /// <summary>The VM's disks under the snapshot's view.</summary>
    public IReadOnlyList<FleecedDisk> Disks => _fleece.Disks;

    /// <summary>
    /// Completes with QEMU's migration statistics (its reported downtime among them) once every page and the
    /// device state are in, QEMU reported the migration completed and the disks are readable. Faults with a
    /// <see cref="LiveSnapshotException"/> otherwise — after the input failed (no reader waits for ever, the
    /// snapshot is never complete), the VM was resumed if it ran before, and the disk views were removed.
    /// </summary>
    public Task<MigrationInfo> Completion { get; }

    /// <summary>From our <c>stop</c> until QMP answered the <c>migrate</c> that restarts the guest (an upper bound seen from outside).</summary>
    public TimeSpan GuestPause { get; }

    /// <summary>Takes the snapshot (the pause happens here) and returns while RAM and disks stream. The work dir must
    /// exist, be ours and mode 0700 (<see cref="LiveWorkDirectory"/>): the migration and NBD sockets, the RAM pages and
    /// the disks' scratch images go there.</summary>
    public static async Task<LiveVmSnapshot> StartAsync(QmpClient qmp, string workDir, int chunkSize, string snapshotId, ILogger logger, CancellationToken ct)
    {
        // Checked before the VM is stopped: the input made inside the pause checks them too, too late to be cheap.
        ChunkMath.ValidateChunkSize(chunkSize);
        WireLimits.ThrowIfInvalidSnapshotId(snapshotId);
        var socketPath = Path.Combine(workDir, "migration.sock");
        File.Delete(socketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(1);
        var abort = CancellationTokenSource.CreateLinkedTokenSource(ct);
        DiskFleece? fleece = null;
        try
        {
            await CheckRoomForRamAsync(qmp, workDir, ct);
            await qmp.SetOnlyMigrationCapabilitiesAsync(["background-snapshot", "events"], ct);
            var status = (await qmp.ExecuteAsync("query-status", null, ct)).GetProperty("status").GetString();
            try
            {
                fleece = await DiskFleece.PrepareAsync(qmp, workDir, ct);
            }
            catch (Exception ex) when (ex is InvalidOperationException or QmpException or IOException)
            {
                throw new LiveSnapshotException($"live snapshot of the VM behind {qmp.Path} not started, the VM goes on as before: {ex.Message}", ex);
            }
            var readers = fleece.Disks.Select(d => new FleecedDiskReader(d)).ToList();
            var mark = qmp.LastEventSequence;

            // The pause: stop, start the disk views, start the snapshot. QEMU restarts the guest itself
            // once device state is saved and RAM is write-protected (migration.c bg_migration_vm_start_bh).
            var clock = Stopwatch.StartNew();
            await qmp.ExecuteAsync("stop", null, ct);
            LiveSnapshotInput? input = null;
            try
            {
                await fleece.StartAsync(ct);
                input = new LiveSnapshotInput(Path.Combine(workDir, "ram"), readers, chunkSize, snapshotId);
                await qmp.MigrateAsync($"unix:{socketPath}", ct);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                if (input is not null)
                {
                    await input.DisposeAsync();
                }
                else
                {
                    foreach (var reader in readers)
                    {
                        await reader.DisposeAsync();
                    }
                }
                // Never leave the VM stopped (or with views nobody reads) because the snapshot could not start.
                await RecoverAsync(qmp, status, fleece, migrationStarted: false, logger);
                if (ex is OperationCanceledException)
                {
                    throw;
                }
                throw new LiveSnapshotException($"live snapshot of the VM behind {qmp.Path} not started, the VM goes on as before: {ex.Message}", ex);
            }
            var pause = clock.Elapsed;

            var completion = RunAsync(qmp, listener, input, readers, fleece, mark, status, logger, abort.Token);
            return new LiveVmSnapshot(qmp, listener, socketPath, abort, input, fleece, completion, pause, logger);
        }
        catch
        {
            if (fleece is not null)
            {
                await TeardownAsync(fleece, logger);
            }
            listener.Dispose();
            File.Delete(socketPath);
            abort.Dispose();
            throw;
        }
    }

    private static async Task<MigrationInfo> RunAsync(QmpClient qmp, Socket listener, LiveSnapshotInput input, IReadOnlyList<FleecedDiskReader> readers,
        DiskFleece fleece, long mark, string? statusBefore, ILogger logger, CancellationToken ct)
    {
        var disksReadable = Task.CompletedTask;
        try
        {
            // The guest runs again: the disk views are exported beside the RAM stream, not inside the pause.
            disksReadable = ConnectDisksAsync(fleece, readers, ct);
            Socket connection;
            using (var accept = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                accept.CancelAfter(TimeSpan.FromSeconds(30));
                try
                {
                    connection = await listener.AcceptAsync(accept.Token);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    throw new LiveSnapshotException("QEMU did not connect to the migration socket within 30 s");
                }
            }
            QemuStreamStatistics statistics;
            using (connection)
            {
                await using var stream = new NetworkStream(connection, ownsSocket: false);
                // 64 KiB reads: a page then rarely straddles two segments (the reader copies those).
                var pipe = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 1 << 20, minimumReadSize: 64 << 10));
                try
                {
                    // Fails the input itself when the stream is cut short or corrupt, or the pages cannot be kept.
                    statistics = await input.ReceiveAsync(pipe, ct);
                }
                catch (LiveSnapshotException)
                {
                    // QEMU 7.2 does not survive a background snapshot that fails while it runs (observed: its vCPU
                    // thread stays blocked in a userfaultfd write fault, the guest hangs for good, even `stop` hangs;
                    // a migrate_cancel is such a failure too). So a failure on our side, or giving up on the snapshot,
                    // lets QEMU finish: the rest of its stream is read and dropped.
                    await DrainAsync(pipe);
                    throw;
                }
                finally
                {
                    await pipe.CompleteAsync();
                }
            }
            var end = await qmp.WaitForMigrationEndAsync(mark, TimeSpan.FromMinutes(30), ct);
            var info = await qmp.QueryMigrateAsync(ct);
            if (end != "completed")
            {
                throw new LiveSnapshotException($"QEMU ended the background snapshot '{end}': {info.ErrorDesc}");
            }
            // A VM paused before the snapshot is resumed by QEMU's snapshot thread (a 7.2 quirk); one that ran keeps running.
            if (statusBefore == "running")
            {
                var now = (await qmp.ExecuteAsync("query-status", null, ct)).GetProperty("status").GetString();
                if (now != "running")
                {
                    await qmp.ExecuteAsync("cont", null, ct);
                }
            }
            await disksReadable;
            LiveLog.SnapshotCompleted(logger, statistics.BytesRead, input.PagesReceived, info.DowntimeMs ?? -1);
            return info;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The stream's failure is the one reported; the disks' own (if any) is already in their readers.
            _ = disksReadable.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            var (vm, answering) = await DescribeVmAsync(qmp);
            var error = new LiveSnapshotException($"live snapshot of the VM behind {qmp.Path} failed: {ex.Message.TrimEnd('.')}{vm}", ex);
            input.Fail(error);
            LiveLog.SnapshotFailed(logger, error.Message);
            if (answering)
            {
                await RecoverAsync(qmp, statusBefore, fleece, migrationStarted: true, logger);
            }
            throw error;
        }
    }

    /// <summary>Reads the rest of the migration stream and drops it, until QEMU closes it or sends nothing for 30 s.</summary>
    private static async Task DrainAsync(PipeReader pipe)
    {
        try
        {
            while (true)
            {
                using var idle = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                var result = await pipe.ReadAsync(idle.Token);
                pipe.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or InvalidOperationException)
        {
            // The connection is gone or QEMU is stuck: the caller reports the original failure.
        }
    }

    /// <summary>
    /// The RAM files are allocated in full when the stream's block list arrives; a work dir that cannot hold
    /// the guest's RAM is refused here already, before the VM is stopped, instead of failing a snapshot that
    /// QEMU must then be made to finish (see <see cref="DrainAsync"/>). The allocation stays the hard guard
    /// against a disk that fills up meanwhile.
    /// </summary>
    private static async Task CheckRoomForRamAsync(QmpClient qmp, string workDir, CancellationToken ct)
    {
        var summary = await qmp.ExecuteAsync("query-memory-size-summary", null, ct);
        var ram = summary.GetProperty("base-memory").GetInt64()
            + (summary.TryGetProperty("plugged-memory", out var plugged) ? plugged.GetInt64() : 0);
        // ROMs, firmware and video RAM come on top of guest memory (a few MiB; 16 MiB with a std VGA).
        var needed = ram + (16L << 20);
        var free = new DriveInfo(Path.GetFullPath(workDir)).AvailableFreeSpace;
        if (free < needed)
        {
            throw new LiveSnapshotException(
                $"live snapshot of the VM behind {qmp.Path} not started: the work dir {workDir} has {free >> 20} MiB free, the VM's RAM needs {needed >> 20} MiB (No space left on device)");
        }
    }

    /// <summary>What QEMU says after a failure, for the error line: the migration's own error, or that the VM is gone.</summary>
    private static async Task<(string Text, bool Answering)> DescribeVmAsync(QmpClient qmp)
    {
        if (qmp.Completion.IsCompleted)
        {
            return ("; the VM's QMP monitor is gone (did QEMU die?)", false);
        }
        try
        {
            using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            var info = await qmp.QueryMigrateAsync(quick.Token);
            return (info.ErrorDesc is { Length: > 0 } desc ? $"; QEMU: migration {info.Status}: {desc}" : "", true);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return (qmp.Completion.IsCompleted ? "; the VM's QMP monitor is gone (did QEMU die?)" : $"; the VM's QMP monitor does not answer ({ex.Message})", false);
        }
    }

    /// <summary>
    /// After a failed snapshot, best effort (QEMU may be gone): end the migration, resume a VM that ran
    /// before our <c>stop</c>, and remove the disk views (no sink can be served this snapshot any more).
    /// </summary>
    private static async Task RecoverAsync(QmpClient qmp, string? statusBefore, DiskFleece fleece, bool migrationStarted, ILogger logger)
    {
        if (qmp.Completion.IsCompleted)
        {
            return;
        }
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            if (migrationStarted)
            {
                var mark = qmp.LastEventSequence;
                var status = (await qmp.QueryMigrateAsync(bound.Token)).Status;
                // A stream we drained to its end completes on QEMU's side a moment later: let it, rather than cancel it.
                for (var i = 0; i < 50 && status is "active" or "device"; i++)
                {
                    await Task.Delay(100, bound.Token);
                    status = (await qmp.QueryMigrateAsync(bound.Token)).Status;
                }
                if (status is not ("completed" or "failed" or "cancelled" or "none"))
                {
                    await qmp.ExecuteAsync("migrate_cancel", null, bound.Token);
                    await qmp.WaitForMigrationEndAsync(mark, TimeSpan.FromSeconds(30), bound.Token);
                }
            }
            if (statusBefore == "running")
            {
                var now = (await qmp.ExecuteAsync("query-status", null, bound.Token)).GetProperty("status").GetString();
                if (now != "running")
                {
                    await qmp.ExecuteAsync("cont", null, bound.Token);
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LiveLog.RecoveryFailed(logger, ex.Message);
        }
        await TeardownAsync(fleece, logger);
    }

    /// <summary>Exports the disk views on QEMU's NBD server and connects a reader to each; a failure fails the readers (and the snapshot).</summary>
    private static async Task ConnectDisksAsync(DiskFleece fleece, IReadOnlyList<FleecedDiskReader> readers, CancellationToken ct)
    {
        try
        {
            await fleece.ExportAsync(ct);
            foreach (var reader in readers)
            {
                await reader.ConnectAsync(fleece.SocketPath, ct);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            foreach (var reader in readers)
            {
                reader.Fail(ex);
            }
            throw new LiveSnapshotException($"the VM's disks cannot be read at the snapshot instant: {ex.Message}", ex);
        }
    }

    /// <summary>Removes the disk views; a failure is logged once (the VM's own disks are untouched either way).</summary>
    private static async Task TeardownAsync(DiskFleece fleece, ILogger logger)
    {
        try
        {
            await fleece.TeardownAsync();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LiveLog.TeardownFailed(logger, ex.Message);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // A snapshot still running (the caller gave up on it) ends now: its reader stops and the VM is recovered.
        await _abort.CancelAsync();
        _listener.Dispose();
        try
        {
            await Completion;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Reported by whoever awaited Completion; disposal never throws.
        }
        // Readers first (their NBD connections), then the views they read.
        await Input.DisposeAsync();
        await TeardownAsync(_fleece, _logger);
        File.Delete(_socketPath);
        _abort.Dispose();
    }
}
