using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using StreamClone.Shared.Qemu;

namespace StreamClone.Source.Live;

/// <summary>
/// A copy-on-write snapshot of a running QEMU VM, taken over QMP and streamed as it is taken:
/// <code>
/// stop → freeze every writable disk (transaction of blockdev-snapshot-sync: the base stops changing,
/// the VM continues on a new qcow2 overlay) → migrate with background-snapshot into our Unix socket
/// (QEMU saves device state, write-protects RAM and restarts the VM by itself) → the stream is
/// parsed as it arrives: pages land in <see cref="LiveSnapshotInput"/>, the device region at the end.
/// </code>
/// The stop makes disk and memory one instant; the guest is paused only from the stop until the
/// snapshot's own restart (<see cref="GuestPause"/>), while RAM streams with the guest running.
/// </summary>
public sealed class LiveVmSnapshot : IAsyncDisposable
{
    private readonly QmpClient _qmp;
    private readonly Socket _listener;

    private LiveVmSnapshot(QmpClient qmp, Socket listener, LiveSnapshotInput input, IReadOnlyList<FrozenDisk> disks, Task<MigrationInfo> completion, TimeSpan pause)
    {
        _qmp = qmp;
        _listener = listener;
        Input = input;
        Disks = disks;
        Completion = completion;
        GuestPause = pause;
    }

    public LiveSnapshotInput Input { get; }

    public IReadOnlyList<FrozenDisk> Disks { get; }

    /// <summary>Completes with QEMU's migration statistics (its reported downtime among them) once every page and the device state are in.</summary>
    public Task<MigrationInfo> Completion { get; }

    /// <summary>From our <c>stop</c> until QMP answered the <c>migrate</c> that restarts the guest (an upper bound seen from outside).</summary>
    public TimeSpan GuestPause { get; }

    public static async Task<LiveVmSnapshot> StartAsync(QmpClient qmp, string workDir, int chunkSize, string snapshotId, ILogger logger, CancellationToken ct)
    {
        Directory.CreateDirectory(workDir);
        var disks = await FindWritableDisksAsync(qmp, ct);
        var socketPath = Path.Combine(workDir, "migration.sock");
        File.Delete(socketPath);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(socketPath));
        listener.Listen(1);
        try
        {
            await qmp.SetOnlyMigrationCapabilitiesAsync(["background-snapshot", "events"], ct);
            var status = (await qmp.ExecuteAsync("query-status", null, ct)).GetProperty("status").GetString();
            var mark = qmp.LastEventSequence;

            // The pause: stop, freeze the disks, start the snapshot. QEMU restarts the guest itself
            // once device state is saved and RAM is write-protected (migration.c bg_migration_vm_start_bh).
            var clock = Stopwatch.StartNew();
            await qmp.ExecuteAsync("stop", null, ct);
            IReadOnlyList<FrozenDisk> frozen;
            try
            {
                frozen = disks.Count == 0 ? [] : await LiveDiskSnapshot.FreezeAsync(qmp, [.. disks.Select(d => d.Node)], workDir, ct);
                await qmp.MigrateAsync($"unix:{socketPath}", ct);
            }
            catch
            {
                // Never leave the VM stopped because the snapshot could not start.
                if (status == "running")
                {
                    await qmp.ExecuteAsync("cont", null, CancellationToken.None);
                }
                throw;
            }
            var pause = clock.Elapsed;

            var input = new LiveSnapshotInput(Path.Combine(workDir, "ram"), [.. frozen.Select(f => f.BaseFile)], chunkSize, snapshotId);
            var completion = RunAsync(qmp, listener, input, mark, status, logger, ct);
            return new LiveVmSnapshot(qmp, listener, input, frozen, completion, pause);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
    }

    private static async Task<MigrationInfo> RunAsync(QmpClient qmp, Socket listener, LiveSnapshotInput input, long mark, string? statusBefore, ILogger logger, CancellationToken ct)
    {
        try
        {
            using var accept = CancellationTokenSource.CreateLinkedTokenSource(ct);
            accept.CancelAfter(TimeSpan.FromSeconds(30));
            using var connection = await listener.AcceptAsync(accept.Token);
            await using var stream = new NetworkStream(connection, ownsSocket: false);
            // 64 KiB reads: a page then rarely straddles two segments (the reader copies those).
            var pipe = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 1 << 20, minimumReadSize: 64 << 10));
            var reader = new QemuStreamReader(pipe, input);
            var parse = reader.ReadToEndAsync(ct);
            var end = qmp.WaitForMigrationEndAsync(mark, TimeSpan.FromMinutes(30), ct);
            await Task.WhenAll(parse, end);
            var info = await qmp.QueryMigrateAsync(ct);
            if (end.Result != "completed")
            {
                throw new InvalidOperationException($"the VM's background snapshot ended '{end.Result}': {info.ErrorDesc}");
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
            await pipe.CompleteAsync();
            LiveLog.SnapshotCompleted(logger, reader.Statistics.BytesRead, input.PagesReceived, info.DowntimeMs ?? -1);
            return info;
        }
        catch (Exception ex)
        {
            input.Fail(ex);
            throw;
        }
    }

    private sealed record WritableDisk(string Device, string Node, string File, string Driver);

    /// <summary>Every writable disk with a medium (query-block); their bases must be raw so they stream as they are.</summary>
    private static async Task<IReadOnlyList<WritableDisk>> FindWritableDisksAsync(QmpClient qmp, CancellationToken ct)
    {
        var disks = new List<WritableDisk>();
        foreach (var device in (await qmp.ExecuteAsync("query-block", null, ct)).EnumerateArray())
        {
            if (!device.TryGetProperty("inserted", out var inserted) || inserted.GetProperty("ro").GetBoolean())
            {
                continue;
            }
            var driver = inserted.GetProperty("drv").GetString() ?? "";
            var name = device.TryGetProperty("qdev", out var qdev) ? qdev.GetString() ?? "" : device.GetProperty("device").GetString() ?? "";
            if (driver != "raw")
            {
                throw new InvalidOperationException($"disk {name} is {driver}; only raw disks can be snapshotted and streamed (convert it with qemu-img convert -O raw)");
            }
            disks.Add(new WritableDisk(name, inserted.GetProperty("node-name").GetString()!, inserted.GetProperty("file").GetString()!, driver));
        }
        return disks;
    }

    /// <summary>Folds every overlay back into its base (block-commit) — only once no sink needs the frozen bases any more.</summary>
    public async Task CommitAsync(CancellationToken ct)
    {
        foreach (var disk in Disks)
        {
            await LiveDiskSnapshot.CommitAsync(_qmp, disk, TimeSpan.FromMinutes(10), ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Dispose();
        try
        {
            await Completion;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Reported by whoever awaited Completion; disposal never throws.
        }
        await Input.DisposeAsync();
    }
}
