using System.Text.Json.Nodes;

namespace StreamClone.Qemu;

/// <summary>One node of the block graph (query-named-block-nodes, flat).</summary>
/// <param name="NodeName">Node name (auto names look like "#block123").</param>
/// <param name="Driver">Block driver: raw, qcow2, file, copy-before-write, …</param>
/// <param name="File">The image file name the node reads.</param>
/// <param name="ReadOnly">Whether the node is read-only.</param>
/// <param name="BackingFile">Backing file name, for overlays.</param>
public sealed record BlockNode(string NodeName, string Driver, string File, bool ReadOnly, string? BackingFile);

/// <summary>Reading a VM's block graph over QMP (qmp.md §5).</summary>
public static class BlockGraph
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
}
