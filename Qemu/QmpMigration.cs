using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace StreamClone.Qemu;

/// <summary>query-migrate, the parts the pipeline uses (QEMU 7.2 MigrationInfo; times in ms).</summary>
/// <param name="Status">none, setup, active, completed, failed, cancelled, … ("none" before any migration).</param>
/// <param name="TotalTimeMs">total-time.</param>
/// <param name="DowntimeMs">downtime (after completion): how long the guest was stopped.</param>
/// <param name="SetupTimeMs">setup-time.</param>
/// <param name="RamTransferred">ram.transferred bytes.</param>
/// <param name="RamTotal">ram.total bytes.</param>
/// <param name="ErrorDesc">error-desc when failed.</param>
/// <param name="Raw">The whole reply.</param>
public sealed record MigrationInfo(string Status, long? TotalTimeMs, long? DowntimeMs, long? SetupTimeMs,
    long? RamTransferred, long? RamTotal, string? ErrorDesc, JsonElement Raw)
{
    internal static MigrationInfo Parse(JsonElement r)
    {
        static long? Num(JsonElement o, string name) =>
            o.ValueKind == JsonValueKind.Object && o.TryGetProperty(name, out var v) && v.TryGetInt64(out var n) ? n : null;
        var ram = r.TryGetProperty("ram", out var ramElement) ? ramElement : default;
        return new MigrationInfo(
            r.TryGetProperty("status", out var s) ? s.GetString() ?? "none" : "none",
            Num(r, "total-time"), Num(r, "downtime"), Num(r, "setup-time"),
            Num(ram, "transferred"), Num(ram, "total"),
            r.TryGetProperty("error-desc", out var e) ? e.GetString() : null,
            r);
    }
}

/// <summary>
/// Typed migration commands (qmp.md §6–7): capabilities, migrate to <c>fd:NAME</c> after getfd, query-migrate,
/// waiting for the MIGRATION event, and migrate-incoming on a VM started with <c>-incoming defer</c>.
/// </summary>
public static class QmpMigration
{
    /// <summary>MIGRATION statuses after which nothing more happens.</summary>
    private static readonly HashSet<string> FinalStatuses = ["completed", "failed", "cancelled"];

    /// <summary>migrate-set-capabilities. Capabilities persist on the VM until changed.</summary>
    public static Task SetMigrationCapabilitiesAsync(this QmpClient qmp, IEnumerable<KeyValuePair<string, bool>> capabilities,
        CancellationToken ct = default)
    {
        var list = new JsonArray();
        foreach (var (name, state) in capabilities)
            list.Add(new JsonObject { ["capability"] = name, ["state"] = state });
        return qmp.ExecuteAsync("migrate-set-capabilities", new JsonObject { ["capabilities"] = list }, ct);
    }

    /// <summary>
    /// Sets exactly <paramref name="wanted"/> on and everything else off: capabilities are checked as a
    /// whole set and persist, so one a previous run enabled (e.g. postcopy-ram) would make
    /// background-snapshot fail. Reads query-migrate-capabilities to know what is on.
    /// </summary>
    public static async Task SetOnlyMigrationCapabilitiesAsync(this QmpClient qmp, IReadOnlyCollection<string> wanted,
        CancellationToken ct = default)
    {
        var current = await qmp.ExecuteAsync("query-migrate-capabilities", null, ct);
        var changes = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var c in current.EnumerateArray())
        {
            var name = c.GetProperty("capability").GetString() ?? "";
            if (c.GetProperty("state").GetBoolean() && !wanted.Contains(name))
                changes[name] = false;
        }
        foreach (var name in wanted)
            changes[name] = true;
        await qmp.SetMigrationCapabilitiesAsync(changes, ct);
    }

    /// <summary>migrate-set-parameters, e.g. <c>{"max-bandwidth": 0}</c>.</summary>
    public static Task SetMigrationParametersAsync(this QmpClient qmp, JsonObject parameters, CancellationToken ct = default) =>
        qmp.ExecuteAsync("migrate-set-parameters", parameters, ct);

    /// <summary>migrate: returns once QEMU accepted it (the migration runs on; wait for its event).</summary>
    public static Task MigrateAsync(this QmpClient qmp, string uri, CancellationToken ct = default) =>
        qmp.ExecuteAsync("migrate", new JsonObject { ["uri"] = uri }, ct);

    /// <summary>migrate-incoming on a VM started with -incoming defer (allowed once per VM).</summary>
    public static Task MigrateIncomingAsync(this QmpClient qmp, string uri, CancellationToken ct = default) =>
        qmp.ExecuteAsync("migrate-incoming", new JsonObject { ["uri"] = uri }, ct);

    public static async Task<MigrationInfo> QueryMigrateAsync(this QmpClient qmp, CancellationToken ct = default) =>
        MigrationInfo.Parse(await qmp.ExecuteAsync("query-migrate", null, ct));

    /// <summary>
    /// Waits for a MIGRATION event with a final status after <paramref name="afterSequence"/> (needs the
    /// "events" capability) and returns that status: completed, failed or cancelled.
    /// </summary>
    public static async Task<string> WaitForMigrationEndAsync(this QmpClient qmp, long afterSequence, TimeSpan timeout,
        CancellationToken ct = default)
    {
        try
        {
            var e = await qmp.WaitForEventAsync("MIGRATION", afterSequence,
                e => FinalStatuses.Contains(e.GetString("status") ?? ""), timeout, ct);
            return e.GetString("status")!;
        }
        catch (TimeoutException)
        {
            var info = await qmp.QueryMigrateAsync(CancellationToken.None);
            throw new TimeoutException($"migration on {qmp.Path} did not end within {timeout.TotalSeconds:0.#} s (status {info.Status})");
        }
    }

    /// <summary>
    /// A live snapshot of a running VM's RAM and device state into <paramref name="fd"/> (QEMU's migration
    /// stream, starting "QEVM"): capabilities exactly background-snapshot + events, getfd, migrate fd:NAME,
    /// wait for completion. The guest keeps running (stopped only for the reported downtime). QEMU closes
    /// its copy of the fd when done; the caller owns and closes its own.
    /// </summary>
    public static async Task<MigrationInfo> BackgroundSnapshotToFdAsync(this QmpClient qmp, SafeHandle fd, TimeSpan timeout,
        string fdName = "scsnap", CancellationToken ct = default)
    {
        await qmp.SetOnlyMigrationCapabilitiesAsync(["background-snapshot", "events"], ct);
        var mark = qmp.LastEventSequence;
        await qmp.GetFdAsync(fdName, fd, ct);
        await qmp.MigrateAsync($"fd:{fdName}", ct);
        var status = await qmp.WaitForMigrationEndAsync(mark, timeout, ct);
        var info = await qmp.QueryMigrateAsync(ct);
        if (status != "completed")
            throw new InvalidOperationException($"background snapshot on {qmp.Path} ended {status}: {info.ErrorDesc}");
        return info;
    }

    /// <summary>
    /// Loads a migration stream from <paramref name="fd"/> into a VM started with -incoming defer:
    /// events on (plus <paramref name="capabilities"/>), getfd, migrate-incoming fd:NAME, wait for completion.
    /// The VM resumes by itself only if the stream's global-state section says the source was running
    /// (migration/migration.c process_incoming_migration_bh; otherwise that run state, e.g. paused, is
    /// adopted — observed with a stopped source). Returns query-status' status: "running", or "paused"
    /// (then <c>cont</c> starts it).
    /// </summary>
    public static async Task<string> IncomingFromFdAsync(this QmpClient qmp, SafeHandle fd, TimeSpan timeout,
        IReadOnlyCollection<string>? capabilities = null, string fdName = "scin", CancellationToken ct = default)
    {
        await qmp.SetOnlyMigrationCapabilitiesAsync([.. capabilities ?? [], "events"], ct);
        var mark = qmp.LastEventSequence;
        await qmp.GetFdAsync(fdName, fd, ct);
        await qmp.MigrateIncomingAsync($"fd:{fdName}", ct);
        var status = await qmp.WaitForMigrationEndAsync(mark, timeout, ct);
        if (status != "completed")
            throw new InvalidOperationException($"incoming migration on {qmp.Path} ended {status}");
        var run = await qmp.ExecuteAsync("query-status", null, ct);
        return run.GetProperty("status").GetString() ?? "";
    }
}
