using System.Text.Json.Nodes;

namespace StreamClone.Shared.Qemu;

/// <summary>One node of the block graph (query-named-block-nodes, flat).</summary>
/// <param name="NodeName">Node name (auto names look like "#block123").</param>
/// <param name="Driver">Block driver: raw, qcow2, file, …</param>
/// <param name="File">The image file name the node reads.</param>
/// <param name="ReadOnly">Whether the node is read-only (a frozen base is).</param>
/// <param name="BackingFile">Backing file name, for overlays.</param>
public sealed record BlockNode(string NodeName, string Driver, string File, bool ReadOnly, string? BackingFile);

/// <summary>A disk whose base stopped changing: the VM writes to <see cref="OverlayFile"/> and
/// <see cref="BaseFile"/> (format <see cref="BaseFormat"/>) can be streamed while the guest runs.</summary>
/// <param name="BaseNodeName">The node that was the active layer, now read-only backing.</param>
/// <param name="BaseFile">Its image file: frozen from the snapshot instant on.</param>
/// <param name="BaseFormat">Its block driver (raw, qcow2).</param>
/// <param name="OverlayNodeName">The new active layer.</param>
/// <param name="OverlayFile">The qcow2 file QEMU created for it.</param>
public sealed record FrozenDisk(string BaseNodeName, string BaseFile, string BaseFormat, string OverlayNodeName, string OverlayFile);

/// <summary>
/// Live disk copy-on-write through QMP (qmp.md §5): <see cref="FreezeAsync(QmpClient, IReadOnlyList{string}, string, CancellationToken)"/>
/// puts a qcow2 overlay on top of each disk node in one transaction (blockdev-snapshot-sync, ~10–30 ms
/// on a running guest), so the bases stop changing while the guest goes on; <see cref="CommitAsync"/>
/// folds an overlay back (active block-commit: READY → block-job-complete → COMPLETED).
/// </summary>
public static class LiveDiskSnapshot
{
    /// <summary>Every node in the block graph, protocol nodes included.</summary>
    public static async Task<IReadOnlyList<BlockNode>> QueryNodesAsync(QmpClient qmp, CancellationToken ct = default)
    {
        var nodes = await qmp.ExecuteAsync("query-named-block-nodes", new JsonObject { ["flat"] = true }, ct);
        return nodes.EnumerateArray().Select(n => new BlockNode(
            n.GetProperty("node-name").GetString() ?? "",
            n.GetProperty("drv").GetString() ?? "",
            n.GetProperty("file").GetString() ?? "",
            n.TryGetProperty("ro", out var ro) && ro.GetBoolean(),
            n.TryGetProperty("backing_file", out var b) ? b.GetString() : null)).ToList();
    }

    /// <summary>The node attached to device <paramref name="deviceId"/> (its active layer), from query-block.
    /// With -blockdev the qdev path is "/machine/peripheral/ID/virtio-backend" and "device" is empty.</summary>
    public static async Task<string> GetActiveNodeAsync(QmpClient qmp, string deviceId, CancellationToken ct = default)
    {
        var blocks = await qmp.ExecuteAsync("query-block", null, ct);
        foreach (var b in blocks.EnumerateArray())
        {
            var qdev = b.TryGetProperty("qdev", out var q) ? q.GetString() ?? "" : "";
            if ((qdev == deviceId || qdev.StartsWith($"/machine/peripheral/{deviceId}/", StringComparison.Ordinal)) &&
                b.TryGetProperty("inserted", out var inserted))
                return inserted.GetProperty("node-name").GetString() ?? "";
        }
        throw new InvalidOperationException($"no block device '{deviceId}' with a medium in query-block on {qmp.Path}");
    }

    /// <summary>Freezes one disk node; see the list overload.</summary>
    public static async Task<FrozenDisk> FreezeAsync(QmpClient qmp, string nodeName, string overlayDirectory, CancellationToken ct = default) =>
        (await FreezeAsync(qmp, [nodeName], overlayDirectory, ct))[0];

    /// <summary>
    /// Snapshots every node in <paramref name="activeNodeNames"/> (each must be a device's active layer)
    /// atomically: one <c>transaction</c> of blockdev-snapshot-sync actions (mode absolute-paths: QEMU
    /// creates each qcow2 overlay in <paramref name="overlayDirectory"/> with the old image as backing).
    /// Returns the frozen bases for the Source to stream.
    /// </summary>
    public static async Task<IReadOnlyList<FrozenDisk>> FreezeAsync(QmpClient qmp, IReadOnlyList<string> activeNodeNames,
        string overlayDirectory, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfZero(activeNodeNames.Count);
        var nodes = (await QueryNodesAsync(qmp, ct)).ToDictionary(n => n.NodeName, StringComparer.Ordinal);
        var frozen = new List<FrozenDisk>();
        var actions = new JsonArray();
        foreach (var name in activeNodeNames)
        {
            if (!nodes.TryGetValue(name, out var node))
                throw new InvalidOperationException($"no block node '{name}' on {qmp.Path} (nodes: {string.Join(", ", nodes.Keys)})");
            // Node names: ≤ 31 chars of [A-Za-z0-9-._], unique on the VM even across processes and
            // repeated freezes (the next freeze's base is this overlay): a prefix of the base + random.
            var overlayNode = $"{name[..Math.Min(name.Length, 12)]}-ovl{Random.Shared.Next():x8}";
            var overlayFile = Path.GetFullPath(Path.Combine(overlayDirectory, $"{overlayNode}.qcow2"));
            if (File.Exists(overlayFile))
                File.Delete(overlayFile);
            actions.Add(new JsonObject
            {
                ["type"] = "blockdev-snapshot-sync",
                ["data"] = new JsonObject
                {
                    ["node-name"] = name,
                    ["snapshot-file"] = overlayFile,
                    ["snapshot-node-name"] = overlayNode,
                    ["format"] = "qcow2",
                },
            });
            frozen.Add(new FrozenDisk(name, node.File, node.Driver, overlayNode, overlayFile));
        }
        await qmp.ExecuteAsync("transaction", new JsonObject { ["actions"] = actions }, ct);
        return frozen;
    }

    /// <summary>
    /// Folds <paramref name="disk"/>'s overlay back into its base while the guest runs: active
    /// block-commit (job id given explicitly: the default is the device name, "" with -blockdev), wait for
    /// BLOCK_JOB_READY, block-job-complete, wait for BLOCK_JOB_COMPLETED (an "error" member there, a
    /// BLOCK_JOB_ERROR or a cancel fails). The base is the active layer again; the overlay file is deleted.
    /// </summary>
    public static async Task CommitAsync(QmpClient qmp, FrozenDisk disk, TimeSpan timeout, CancellationToken ct = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        var jobId = $"commit-{disk.OverlayNodeName}";
        var mark = qmp.LastEventSequence;
        try
        {
            await qmp.ExecuteAsync("block-commit", new JsonObject
            {
                ["job-id"] = jobId,
                ["device"] = disk.OverlayNodeName,
                ["base-node"] = disk.BaseNodeName,
            }, cts.Token);

            var completeSent = false;
            await foreach (var e in qmp.ReadEventsAsync(mark, cts.Token))
            {
                if (e.GetString("device") != jobId && e.GetString("id") != jobId)
                    continue;
                switch (e.Name)
                {
                    case "BLOCK_JOB_READY" when !completeSent:
                        completeSent = true;
                        await qmp.ExecuteAsync("block-job-complete", new JsonObject { ["device"] = jobId }, cts.Token);
                        break;
                    case "BLOCK_JOB_COMPLETED":
                        if (e.GetString("error") is { } error)
                            throw new InvalidOperationException($"block-commit of {disk.OverlayFile} into {disk.BaseFile} failed: {error}");
                        File.Delete(disk.OverlayFile);
                        return;
                    case "BLOCK_JOB_CANCELLED":
                        throw new InvalidOperationException($"block-commit job {jobId} was cancelled");
                    case "BLOCK_JOB_ERROR":
                        throw new InvalidOperationException($"block-commit job {jobId}: I/O error ({e.Data.GetRawText()})");
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            var jobs = await qmp.ExecuteAsync("query-block-jobs", null, CancellationToken.None);
            throw new TimeoutException($"block-commit job {jobId} did not complete within {timeout.TotalSeconds:0.#} s; jobs: {jobs.GetRawText()}");
        }
    }
}
