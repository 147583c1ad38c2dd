using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using StreamClone.Processes;
using StreamClone.Shared;

namespace StreamClone.Qemu;

/// <summary>One disk of the VM under a point-in-time view.</summary>
/// <param name="Device">The device's name in query-block (the -drive id, or the qdev path with -blockdev).</param>
/// <param name="ActiveNode">The node the device uses; only referenced, never renamed (auto names start with '#').</param>
/// <param name="File">The image file behind it (for names and messages; never opened by us).</param>
/// <param name="Format">Its block driver (raw, qcow2, …): the view is the guest's disk whatever the format.</param>
/// <param name="Size">Virtual size in bytes.</param>
/// <param name="ScratchNode">Our qcow2 node that receives the old content of each block the guest overwrites.</param>
/// <param name="ScratchFile">Its file in the work dir (0600).</param>
/// <param name="JobId">The blockdev-backup sync=none job that holds the copy-before-write filter in place.</param>
/// <param name="ExportName">The view's name on QEMU's NBD server.</param>
public sealed record FleecedDisk(string Device, string ActiveNode, string File, string Format, long Size,
    string ScratchNode, string ScratchFile, string JobId, string ExportName);

/// <summary>
/// A point-in-time view of every writable disk of a running VM that leaves the VM's own disk chain alone
/// (image fleecing, disk-fleecing.md): <see cref="PrepareAsync"/> adds a scratch qcow2 node per disk whose
/// backing is the disk's active node; <see cref="StartAsync"/> (while the VM is stopped, in one transaction for
/// all disks) inserts a copy-before-write filter through a blockdev-backup sync=none job, so from then on the
/// guest's writes go to its own image as before and the old content of each block lands in the scratch node
/// first; <see cref="ExportAsync"/> serves each scratch node (= the disk at the snapshot instant) read-only on
/// QEMU's NBD server over a Unix socket in the work dir. <see cref="TeardownAsync"/> removes everything again,
/// in the order the graph allows, so the block graph is what it was before.
/// </summary>
public sealed class DiskFleece
{
    private readonly QmpClient _qmp;
    private readonly List<FleecedDisk> _added = [];
    private readonly List<string> _exported = [];
    private bool _jobsStarted;
    private bool _serverStarted;
    private bool _tornDown;

    private DiskFleece(QmpClient qmp, string socketPath)
    {
        _qmp = qmp;
        SocketPath = socketPath;
    }

    /// <summary>The disks under the view, in query-block order.</summary>
    public IReadOnlyList<FleecedDisk> Disks => _added;

    /// <summary>QEMU's NBD server socket (valid after <see cref="ExportAsync"/>).</summary>
    public string SocketPath { get; }

    /// <summary>
    /// Finds every writable disk with a medium (query-block) and adds its scratch node (not yet in the guest's
    /// write path: the VM is unaffected until <see cref="StartAsync"/>). Done before the VM is stopped, so the pause
    /// holds only the transaction. On failure, what was added is removed again.
    /// </summary>
    public static async Task<DiskFleece> PrepareAsync(QmpClient qmp, string workDir, CancellationToken ct)
    {
        var fleece = new DiskFleece(qmp, Path.GetFullPath(Path.Combine(workDir, "nbd.sock")));
        try
        {
            // Unpredictable per snapshot: names of ours never collide with the VM's or with an earlier snapshot's
            // leftovers, and a name starting with '#' (QEMU's own) is never made (QEMU refuses those).
            // The process id in every name lets a later source tell the views of a source that was killed (no cleanup
            // ran) from those of one that still serves them.
            var tag = $"{Environment.ProcessId}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
            await fleece.RemoveLeftoversAsync(ct);
            var disks = await FindDisksAsync(qmp, ct);
            CheckRoomForScratch(workDir, disks, qmp.Path);
            for (var i = 0; i < disks.Count; i++)
            {
                var (device, node, file, format, size) = disks[i];
                var scratchNode = $"scfl-{tag}-{i}";
                var scratchFile = Path.GetFullPath(Path.Combine(workDir, $"{scratchNode}.qcow2"));
                await CreateScratchImageAsync(scratchFile, size, ct);
                try
                {
                    // No backing in the file's header: the backing is the live node itself, given here by reference.
                    await qmp.ExecuteAsync("blockdev-add", new JsonObject
                    {
                        ["driver"] = "qcow2",
                        ["node-name"] = scratchNode,
                        ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = scratchFile },
                        ["backing"] = node,
                    }, ct);
                }
                catch
                {
                    File.Delete(scratchFile);
                    throw;
                }
                fleece._added.Add(new FleecedDisk(device, node, file, format, size, scratchNode, scratchFile, $"scfl-job-{tag}-{i}", $"scfl-{tag}-{i}"));
            }
            return fleece;
        }
        catch
        {
            await fleece.TeardownAsync();
            throw;
        }
    }

    /// <summary>
    /// The snapshot instant, for all disks at once: one transaction of blockdev-backup sync=none actions
    /// (2.9 ms here, disk-fleecing.md §4). Call while the VM is stopped so disk and memory are one instant.
    /// </summary>
    public async Task StartAsync(CancellationToken ct)
    {
        if (_added.Count == 0)
        {
            return;
        }
        var actions = new JsonArray();
        foreach (var disk in _added)
        {
            actions.Add(new JsonObject
            {
                ["type"] = "blockdev-backup",
                ["data"] = new JsonObject { ["job-id"] = disk.JobId, ["device"] = disk.ActiveNode, ["target"] = disk.ScratchNode, ["sync"] = "none" },
            });
        }
        // Set before the call: a transaction that failed half-way is rolled back by QEMU, and cancelling a job that
        // is not there is harmless in the teardown.
        _jobsStarted = true;
        await _qmp.ExecuteAsync("transaction", new JsonObject { ["actions"] = actions }, ct);
    }

    /// <summary>Serves each disk's view read-only on QEMU's NBD server at <see cref="SocketPath"/> (the VM runs meanwhile).</summary>
    public async Task ExportAsync(CancellationToken ct)
    {
        if (_added.Count == 0)
        {
            return;
        }
        File.Delete(SocketPath);
        try
        {
            await _qmp.ExecuteAsync("nbd-server-start", new JsonObject
            {
                ["addr"] = new JsonObject { ["type"] = "unix", ["data"] = new JsonObject { ["path"] = SocketPath } },
            }, ct);
        }
        catch (QmpException ex)
        {
            // QEMU has one NBD server; someone else's (a backup tool's) is not ours to stop or share.
            throw new InvalidOperationException($"cannot serve the disk snapshot from the VM behind {_qmp.Path}: nbd-server-start: {ex.Desc}", ex);
        }
        _serverStarted = true;
        foreach (var disk in _added)
        {
            await _qmp.ExecuteAsync("block-export-add", new JsonObject
            {
                ["type"] = "nbd",
                ["id"] = disk.ExportName,
                ["node-name"] = disk.ScratchNode,
                ["name"] = disk.ExportName,
                ["writable"] = false,
            }, ct);
            _exported.Add(disk.ExportName);
        }
    }

    /// <summary>
    /// Removes the view (disk-fleecing.md §6): exports (connections dropped), the NBD server, the backup jobs
    /// (their copy-before-write filters go with them), then the scratch nodes and files. Every step is tried even
    /// when one fails (QEMU may be gone: then its side went with it); the first failure is thrown at the end.
    /// Bounded in time; idempotent.
    /// </summary>
    public async Task TeardownAsync()
    {
        if (_tornDown)
        {
            return;
        }
        _tornDown = true;
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = bound.Token;
        var failures = new List<string>();
        var alive = !_qmp.Completion.IsCompleted;
        async Task TryAsync(string what, Func<Task> step)
        {
            if (!alive)
            {
                return;
            }
            try
            {
                await step();
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                failures.Add($"{what}: {ex.Message}");
                alive = !_qmp.Completion.IsCompleted;
            }
        }

        foreach (var export in _exported)
        {
            await TryAsync($"block-export-del {export}", async () =>
            {
                var mark = _qmp.LastEventSequence;
                // "hard": our readers are closed by now; anyone else connected to our export has no claim on it.
                await _qmp.ExecuteAsync("block-export-del", new JsonObject { ["id"] = export, ["mode"] = "hard" }, ct);
                // The export holds the scratch node until it is really gone (the deletion is asynchronous).
                await _qmp.WaitForEventAsync("BLOCK_EXPORT_DELETED", mark, e => e.GetString("id") == export, TimeSpan.FromSeconds(30), ct);
            });
        }
        if (_serverStarted)
        {
            await TryAsync("nbd-server-stop", () => _qmp.ExecuteAsync("nbd-server-stop", null, ct));
        }
        if (_jobsStarted)
        {
            foreach (var disk in _added.Where(d => d.JobId.Length > 0))
            {
                await TryAsync($"block-job-cancel {disk.JobId}", () => CancelJobAsync(disk.JobId, ct));
            }
        }
        foreach (var disk in Enumerable.Reverse(_added))
        {
            await TryAsync($"blockdev-del {disk.ScratchNode}", () => _qmp.ExecuteAsync("blockdev-del", new JsonObject { ["node-name"] = disk.ScratchNode }, ct));
        }
        foreach (var disk in _added.Where(d => d.ScratchFile.Length > 0))
        {
            // Even when QEMU is gone: the file is ours and holds the VM's old disk blocks.
            try
            {
                File.Delete(disk.ScratchFile);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                failures.Add($"delete {disk.ScratchFile}: {ex.Message}");
            }
        }
        if (_serverStarted && SocketPath.Length > 0)
        {
            File.Delete(SocketPath);
        }
        if (failures.Count > 0)
        {
            throw new InvalidOperationException($"removing the disk snapshot view from the VM behind {_qmp.Path}: {string.Join("; ", failures)}");
        }
    }

    private const string Prefix = "scfl-";
    private const string JobPrefix = "scfl-job-";

    /// <summary>
    /// Removes the views a killed source left on this VM (SIGKILL runs no cleanup): its exports, the NBD server it
    /// started, its backup jobs (and with them the copy-before-write filters), its scratch nodes and files. Only views
    /// whose source process is gone are touched (names carry the pid: "scfl-PID-…"); another live source's views stay.
    /// </summary>
    private async Task RemoveLeftoversAsync(CancellationToken ct)
    {
        static bool Orphaned(string? name, string prefix)
        {
            if (name is null || !name.StartsWith(prefix, StringComparison.Ordinal))
            {
                return false;
            }
            var rest = name[prefix.Length..];
            var dash = rest.IndexOf('-', StringComparison.Ordinal);
            return dash > 0 && int.TryParse(rest.AsSpan(0, dash), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid)
                && pid != Environment.ProcessId && !ProcessRuns(pid);
        }

        var exports = (await _qmp.ExecuteAsync("query-block-exports", null, ct)).EnumerateArray().Select(e => e.GetProperty("id").GetString()).ToList();
        var jobs = (await _qmp.ExecuteAsync("query-block-jobs", null, ct)).EnumerateArray().Select(j => j.GetProperty("device").GetString()).ToList();
        var nodes = await BlockGraph.QueryNodesAsync(_qmp, ct);
        var orphanNodes = nodes.Where(n => Orphaned(n.NodeName, Prefix) && !n.NodeName.StartsWith(JobPrefix, StringComparison.Ordinal)).ToList();
        var orphanExports = exports.Where(e => Orphaned(e, Prefix)).ToList();
        var orphanJobs = jobs.Where(j => Orphaned(j, JobPrefix)).ToList();
        if (orphanNodes.Count + orphanExports.Count + orphanJobs.Count == 0)
        {
            return;
        }
        // Adopted as if they were ours: the teardown order applies unchanged.
        var leftovers = new DiskFleece(_qmp, "") { _jobsStarted = true };
        leftovers._exported.AddRange(orphanExports!);
        // The NBD server is stopped only when every export on it was a dead source's (one server per QEMU).
        leftovers._serverStarted = orphanExports.Count > 0 && orphanExports.Count == exports.Count;
        foreach (var node in orphanNodes)
        {
            var job = JobPrefix + node.NodeName[Prefix.Length..];
            // The scratch node's own file name is a json: description (its backing is given by reference); the
            // protocol node under it names the file.
            var file = nodes.FirstOrDefault(n => n.Driver == "file" && Path.GetFileName(n.File) == node.NodeName + ".qcow2")?.File ?? "";
            leftovers._added.Add(new FleecedDisk("", "", "", "", 0, node.NodeName, file, orphanJobs.Contains(job) ? job : "", ""));
        }
        await leftovers.TeardownAsync();
    }

    private static bool ProcessRuns(int pid) => Directory.Exists($"/proc/{pid}");

    /// <summary>Cancels a backup job and waits until QEMU dismissed it (JOB_STATUS_CHANGE null: its filter is out of the graph).</summary>
    private async Task CancelJobAsync(string jobId, CancellationToken ct)
    {
        var mark = _qmp.LastEventSequence;
        try
        {
            await _qmp.ExecuteAsync("block-job-cancel", new JsonObject { ["device"] = jobId }, ct);
        }
        catch (QmpException ex) when (ex.Class == "DeviceNotActive")
        {
            // Never started (the transaction failed) or already ended on its own.
            return;
        }
        await _qmp.WaitForEventAsync("JOB_STATUS_CHANGE", mark, e => e.GetString("id") == jobId && e.GetString("status") == "null", TimeSpan.FromSeconds(30), ct);
    }

    /// <summary>Every writable disk with a medium, from query-block: device, active node, file, format, virtual size.</summary>
    private static async Task<List<(string Device, string Node, string File, string Format, long Size)>> FindDisksAsync(QmpClient qmp, CancellationToken ct)
    {
        var disks = new List<(string, string, string, string, long)>();
        foreach (var device in (await qmp.ExecuteAsync("query-block", null, ct)).EnumerateArray())
        {
            // Read-only media (a CD-ROM) do not change, and a copy-before-write filter needs a writable node.
            if (!device.TryGetProperty("inserted", out var inserted) || inserted.GetProperty("ro").GetBoolean())
            {
                continue;
            }
            var name = device.TryGetProperty("device", out var d) && d.GetString() is { Length: > 0 } id ? id
                : device.TryGetProperty("qdev", out var qdev) ? qdev.GetString() ?? "" : "";
            var size = inserted.TryGetProperty("image", out var image) && image.TryGetProperty("virtual-size", out var vs) && vs.ValueKind == JsonValueKind.Number
                ? vs.GetInt64() : -1;
            if (size < 0)
            {
                throw new InvalidOperationException($"disk {name} of the VM behind {qmp.Path}: query-block gives no virtual size");
            }
            disks.Add((name, inserted.GetProperty("node-name").GetString() ?? "", inserted.GetProperty("file").GetString() ?? "",
                inserted.GetProperty("drv").GetString() ?? "", size));
        }
        return disks;
    }

    /// <summary>
    /// The scratch images grow by every block the guest overwrites while the view lives, up to each disk's size
    /// (disk-fleecing.md "Costs"). QEMU's backup filter fails the guest's write when the copy cannot be stored,
    /// and a guest disk with the default werror=enospc then pauses the VM: room for the worst case is checked
    /// before the VM is touched.
    /// </summary>
    private static void CheckRoomForScratch(string workDir, List<(string Device, string Node, string File, string Format, long Size)> disks, string qmpPath)
    {
        var needed = disks.Sum(d => d.Size);
        var free = new DriveInfo(Path.GetFullPath(workDir)).AvailableFreeSpace;
        if (free < needed)
        {
            throw new InvalidOperationException(
                $"the work dir {workDir} has {free >> 20} MiB free; the snapshot of the VM behind {qmpPath} may need up to {needed >> 20} MiB there for the old content of blocks the guest overwrites while the snapshot is served (No space left on device)");
        }
    }

    /// <summary>An empty qcow2 of <paramref name="size"/> bytes, mode 0600 (it will hold the VM's disk blocks).</summary>
    private static async Task CreateScratchImageAsync(string path, long size, CancellationToken ct)
    {
        // Created by us first, exclusively and 0600: qemu-img then rewrites the existing file and keeps its mode.
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = VmStateModes.File;
        }
        using (File.Open(path, options))
        {
        }
        try
        {
            await ProcessRunner.RunAsync(new("qemu-img", ["create", "-q", "-f", "qcow2", path, size.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { InstallHint = "apt-get install qemu-utils" }, ct);
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, VmStateModes.File);
            }
        }
        catch
        {
            File.Delete(path);
            throw;
        }
    }
}
