using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using StreamClone.Processes;
using StreamClone.Qemu;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store;

namespace StreamClone.Clone;

/// <summary>
/// Eager restore: a clone QEMU started with <c>-incoming defer</c> is fed a migration stream rebuilt
/// from a complete snapshot in the store (RAM pages from the memory objects, device state from its
/// object) and runs from the snapshot instant. Its disk is its own qcow2 overlay on the store's frozen
/// base, so any number of clones share one local copy and the copy is never written.
/// </summary>
public static class CloneRestorer
{
    /// <summary>Starts a clone; the caller owns (and disposes) the returned VM.</summary>
    /// <param name="snapshot">A complete snapshot.</param>
    /// <param name="vm">The clone's QEMU configuration: it must match the source VM's (machine, memory size, devices).</param>
    /// <param name="workDir">Where the clone's overlay and sockets go.</param>
    /// <param name="logger">Logs.</param>
    /// <param name="ct">Cancels the restore.</param>
    public static async Task<RestoredClone> RestoreAsync(SnapshotAssembly snapshot, VmOptions vm, string workDir, ILogger logger, CancellationToken ct)
    {
        if (!snapshot.IsComplete)
        {
            // InvalidDataException: the CLI ends with this one line (a partial snapshot is expected after a failed transfer).
            throw new InvalidDataException($"snapshot {snapshot.SnapshotId} is not complete ({snapshot.PresentChunks}/{snapshot.TotalChunks} chunks): only a verified, complete snapshot is restored");
        }
        var clock = Stopwatch.StartNew();
        // The clone's overlay takes the guest's disk writes: VM state, so the directory is private (0700).
        StoreIO.CreatePrivateDirectory(workDir);
        var manifest = snapshot.ReadManifest() ?? throw new InvalidDataException($"snapshot {snapshot.SnapshotId} has no manifest");
        var objects = snapshot.Objects;
        var stateObject = objects.SingleOrDefault(o => o.Kind == ObjectKind.DeviceState)
            ?? throw new InvalidDataException($"snapshot {snapshot.SnapshotId} has no device-state object: it is not a VM snapshot");
        var blob = ReadDeviceState(snapshot, stateObject);

        var disk = objects.FirstOrDefault(o => o.Kind == ObjectKind.Disk);
        string? overlay = null;
        if (disk is not null)
        {
            overlay = Path.Combine(workDir, $"clone-{Guid.NewGuid():N}.qcow2");
            await QemuImg.CreateOverlayAsync(snapshot.GetObjectPath(disk.Id), "raw", overlay, ct);
        }

        var ram = new StoreRamSource(snapshot, manifest, blob);
        var clone = await VmLauncher.StartAsync(vm with
        {
            IncomingDefer = true,
            WaitForBoot = false,
            DiskPath = overlay ?? vm.DiskPath,
            DiskFormat = overlay is null ? vm.DiskFormat : "qcow2",
            WorkDir = Path.Combine(workDir, "vm"),
        }, logger, ct);
        try
        {
            var (feed, qemuEnd) = UnixNative.SocketPair();
            using (feed)
            {
                await using var stream = new NetworkStream(feed, ownsSocket: false);
                var write = QemuStreamWriter.WriteAsync(blob, ram, stream, null, ct);
                string state;
                QemuStreamWriterStatistics statistics;
                try
                {
                    using (qemuEnd)
                    {
                        state = await clone.Qmp.IncomingFromFdAsync(qemuEnd.SafeHandle, TimeSpan.FromMinutes(10), ct: ct);
                    }
                    statistics = await write;
                }
                catch (Exception e) when (e is InvalidOperationException or QmpException or QmpProtocolException or IOException or SocketException
                                          && !ct.IsCancellationRequested)
                {
                    // QEMU ends a refused incoming migration and says why on stderr (e.g. "Length mismatch: pc.ram" when
                    // the clone's memory size is not the source's): that line, not the broken pipe, is the error.
                    feed.Dispose();
                    await ((Task)write).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    await ((Task)clone.Exited).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    var said = clone.StderrTail.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    throw new InvalidDataException(
                        $"QEMU refused the migration stream of snapshot {snapshot.SnapshotId} ({e.Message.TrimEnd('.')}); QEMU: {string.Join(" | ", said.TakeLast(3))}", e);
                }
                feed.Shutdown(SocketShutdown.Send);
                // A source paused for the snapshot instant records "paused" in its global state: the clone resumes here.
                if (state != "running")
                {
                    await clone.Qmp.ExecuteAsync("cont", null, ct);
                }
                RestoreLog.CloneStarted(logger, snapshot.SnapshotId, clock.Elapsed.TotalMilliseconds, statistics.PageRecords);
                return new RestoredClone(clone, overlay, clock.Elapsed);
            }
        }
        catch
        {
            await clone.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Reads the device-state object's length field, then only the blob it announces: never more than
    /// <see cref="WireLimits.MaxDeviceStateBytes"/>, whatever size the source gave the object (the offer
    /// rule refuses larger ones; a store written before that rule may still hold one).
    /// </summary>
    internal static DeviceStateBlob ReadDeviceState(SnapshotAssembly snapshot, ObjectInfo stateObject)
    {
        if (stateObject.Size > WireLimits.MaxDeviceStateBytes)
        {
            throw new InvalidDataException(
                $"snapshot {snapshot.SnapshotId}: device-state object of {stateObject.Size} bytes exceeds the limit of {WireLimits.MaxDeviceStateBytes}");
        }
        Span<byte> lengthField = stackalloc byte[8];
        if (snapshot.Read(stateObject.Id, 0, lengthField) != lengthField.Length)
        {
            throw new InvalidDataException($"snapshot {snapshot.SnapshotId}: device-state object is shorter than its length field");
        }
        var length = BinaryPrimitives.ReadInt64LittleEndian(lengthField);
        if (length <= 0 || length > stateObject.Size - 8)
        {
            throw new InvalidDataException(
                $"snapshot {snapshot.SnapshotId}: device-state object says {length} bytes but holds {stateObject.Size - 8}");
        }
        var blob = new byte[length];
        snapshot.Read(stateObject.Id, 8, blob);
        return DeviceStateBlob.Deserialize(blob);
    }

    /// <summary>Pages of the snapshot's memory objects; zero chunks are skipped without a read.</summary>
    private sealed class StoreRamSource : IRamSource
    {
        private readonly SnapshotAssembly _snapshot;
        private readonly ManifestObject[] _byBlock;

        public StoreRamSource(SnapshotAssembly snapshot, SnapshotManifest manifest, DeviceStateBlob blob)
        {
            _snapshot = snapshot;
            _byBlock = [.. blob.Blocks.Select(b => manifest.Objects.SingleOrDefault(o => o.Kind == ObjectKind.Memory && o.Name == b.Name && o.Size == b.UsedLength)
                ?? throw new InvalidDataException($"RAM block {b.Name} ({b.UsedLength} bytes) of the device state has no memory object of that size in the snapshot"))];
        }

        public ValueTask<bool> TryReadPageAsync(int blockIndex, long offset, Memory<byte> destination, CancellationToken ct)
        {
            var obj = _byBlock[blockIndex];
            if (obj.GetHash(offset / obj.ChunkSize).IsZeroMark)
            {
                return ValueTask.FromResult(false);
            }
            _snapshot.Read(obj.Id, offset, destination.Span[..ChunkMath.PageSize]);
            return ValueTask.FromResult(true);
        }
    }
}

/// <summary>A running clone: dispose to stop it and remove its overlay.</summary>
public sealed class RestoredClone : IAsyncDisposable
{
    private readonly string? _overlay;

    internal RestoredClone(VmLauncher vm, string? overlay, TimeSpan restoreTime)
    {
        Vm = vm;
        _overlay = overlay;
        RestoreTime = restoreTime;
    }

    public VmLauncher Vm { get; }

    /// <summary>From the start of the restore until the clone was running.</summary>
    public TimeSpan RestoreTime { get; }

    public async ValueTask DisposeAsync()
    {
        await Vm.DisposeAsync();
        if (_overlay is not null)
        {
            File.Delete(_overlay);
        }
    }
}

internal static class QemuImg
{
    public static async Task CreateOverlayAsync(string backing, string backingFormat, string overlay, CancellationToken ct)
    {
        // Created 0600 first: qemu-img opens an existing file without changing its mode, where it would create one 0644.
        var private0600 = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            private0600.UnixCreateMode = VmStateModes.File;
        }
        using (new FileStream(overlay, private0600))
        {
        }
        var create = await ProcessRunner.RunAsync(
            new("qemu-img", ["create", "-q", "-f", "qcow2", "-b", Path.GetFullPath(backing), "-F", backingFormat, overlay]) { InstallHint = "apt-get install qemu-utils" },
            ct, check: false);
        if (create.ExitCode != 0)
        {
            throw new IOException($"qemu-img create overlay on {backing} failed: {create.Stderr.Trim().ReplaceLineEndings(" | ")}");
        }
    }
}
