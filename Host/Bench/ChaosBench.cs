using System.Diagnostics;
using StreamClone.Perf;
using StreamClone.Perf.Faults;
using StreamClone.Processes;

namespace StreamClone.Host.Bench;

/// <summary>One run's outcome, as the report prints it.</summary>
internal sealed record ChaosRunResult(
    int Run, string Fault, string Plan, bool Applied, string Outcome, double Seconds,
    int SinkStarts, int SourceStarts, long PresentChunks, long TotalChunks, long WrongChunks,
    bool? InspectClean, bool StackTrace, string? Hang, string? StoreError,
    IReadOnlyList<ChaosExit> Exits, IReadOnlyList<string> Events, string? Excerpt);

/// <summary>
/// `bench chaos`: runs the real source and sink processes through the fault proxy, one random fault
/// per run at a random moment, lets them recover as a supervisor would, and checks every run's store
/// against the image byte for byte. Outcomes: identical; clear_failure (one clear error line, store
/// holding only verified chunks); wrong_bytes (a stored chunk differs from the image: must never
/// happen); hang (nothing moved and nothing exited within the hang timeout); unclear_failure (a stack
/// trace, or a store that cannot be read).
/// </summary>
internal static class ChaosBench
{
    public const string Identical = "identical";
    public const string ClearFailure = "clear_failure";
    public const string UnclearFailure = "unclear_failure";
    public const string WrongBytes = "wrong_bytes";
    public const string Hang = "hang";

    public static async Task<(Dictionary<string, object?> Report, List<ChaosRunResult> Runs)> RunAsync(
        int runs, int seed, long size, IReadOnlyList<ChaosFault> faults, ChaosSettings baseSettings, Action<string> progress, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(baseSettings.WorkDir);
        var image = Path.Combine(baseSettings.WorkDir, "image.img");
        await ImageGenerator.GenerateAsync(image, size, ImageProfile.Memory, seed, ct);
        var settings = baseSettings with { Image = image };

        var kinds = faults.Where(f => f != ChaosFault.DiskFull || TmpfsMount.Available).Distinct().ToList();
        var skipped = new List<string>();
        if (faults.Contains(ChaosFault.DiskFull) && !TmpfsMount.Available)
        {
            skipped.Add(ChaosPlan.Key(ChaosFault.DiskFull) + " (needs root for a tmpfs)");
        }
        if (kinds.Count == 0)
        {
            throw new ArgumentException("no fault kinds left to run");
        }

        var reference = await MeasureReferenceAsync(settings, ct);
        progress($"reference: {reference.BulkDown} bulk bytes down, store {reference.StoreBytes} bytes, {reference.Seconds:F1} s");

        var random = new Random(seed);
        var bag = new List<ChaosFault>();
        var results = new List<ChaosRunResult>();
        for (var i = 1; i <= runs; i++)
        {
            // Every kind once per round, in random order: 30 runs of 9 kinds cover each 3-4 times.
            if (bag.Count == 0)
            {
                bag.AddRange(kinds.OrderBy(_ => random.Next()));
            }
            var fault = bag[^1];
            bag.RemoveAt(bag.Count - 1);
            var plan = ChaosPlan.Draw(fault, random, reference);
            var result = await RunOneAsync(settings, i, plan, reference, ct);
            results.Add(result);
            progress($"run {i}/{runs} {plan.Describe()}: {result.Outcome}{(result.Applied ? "" : " (fault not reached)")} in {result.Seconds:F1} s" +
                $"{(result.Hang is null ? "" : $" [{result.Hang}]")}{(result.StackTrace ? " [stack trace]" : "")}");
        }

        var report = new Dictionary<string, object?>
        {
            ["runs"] = runs,
            ["identical"] = results.Count(r => r.Outcome == Identical),
            ["clear_failures"] = results.Count(r => r.Outcome == ClearFailure),
            ["wrong_bytes"] = results.Count(r => r.Outcome == WrongBytes),
            ["hangs"] = results.Count(r => r.Outcome == Hang),
            ["unclear_failures"] = results.Count(r => r.Outcome == UnclearFailure),
            ["stack_traces"] = results.Count(r => r.StackTrace),
            ["faults_applied"] = results.Count(r => r.Applied),
            ["faults"] = kinds.OrderBy(k => k).ToDictionary(ChaosPlan.Key, k => results.Count(r => r.Fault == ChaosPlan.Key(k))),
            ["outcomes"] = results.GroupBy(r => r.Fault).OrderBy(g => g.Key, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => g.GroupBy(r => r.Outcome).OrderBy(o => o.Key, StringComparer.Ordinal).ToDictionary(o => o.Key, o => o.Count())),
            ["seed"] = seed,
            ["size"] = size,
            ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
        };
        if (skipped.Count > 0)
        {
            report["skipped_faults"] = skipped;
        }
        return (report, results);
    }

    private static async Task<ChaosReference> MeasureReferenceAsync(ChaosSettings settings, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var run = new ChaosRun(settings, 0, plan: null, reference: null);
        try
        {
            await run.RunAsync(ct);
            var history = run.Proxy.History;
            long Bytes(int connection, ProxyDirection direction) =>
                history.FirstOrDefault(c => c.Number == connection)?.BytesRead(direction) ?? 0;
            var check = await ChaosCheck.CheckStoreAsync(run.Store, run.SnapshotId, settings.Image, ct);
            if (!run.SinkSucceeded || !check.Complete || check.WrongChunks != 0)
            {
                throw new ChaosBenchException(
                    $"the fault-free reference run did not produce an identical copy ({run.Hang ?? run.LastSinkFailure?.LastLine ?? "copy differs"})");
            }
            return new ChaosReference(Bytes(1, ProxyDirection.Downstream), Bytes(1, ProxyDirection.Upstream),
                Bytes(2, ProxyDirection.Downstream), Bytes(2, ProxyDirection.Upstream),
                await AllocatedBytesAsync(run.Store, ct), clock.Elapsed.TotalSeconds);
        }
        finally
        {
            await run.DisposeAsync();
            DeleteQuietly(Path.Combine(settings.WorkDir, "run-0"));
        }
    }

    /// <summary>Bytes the store's files occupy on disk (sparse object files count only their data), via du.</summary>
    private static async Task<long> AllocatedBytesAsync(string directory, CancellationToken ct)
    {
        var du = await ProcessRunner.RunAsync(new("du", ["-s", "-B1", directory]), ct);
        return long.Parse(du.Stdout.Split('\t')[0], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static async Task<ChaosRunResult> RunOneAsync(ChaosSettings settings, int index, ChaosPlan plan, ChaosReference reference, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var run = new ChaosRun(settings, index, plan, reference);
        try
        {
            await run.RunAsync(ct);
            // Processes are dead and the proxy closed; the store (on its tmpfs, if any) is still mounted.
            var check = await ChaosCheck.CheckStoreAsync(run.Store, run.SnapshotId, settings.Image, ct);
            var copySame = run.SinkSucceeded && run.CopyPath is { } copy && File.Exists(copy)
                && await FileCompare.SameContentAsync(settings.Image, copy, ct);
            bool? inspectClean = check.Readable && Directory.Exists(run.Store) ? await InspectVerifyAsync(run.Store, ct) : null;
            var stackTrace = run.Stderr.Any(ChaosCheck.HasStackTrace);
            string outcome;
            // Wrong bytes first: a run that also hung must not hide them.
            if (check.WrongChunks > 0 || (run.SinkSucceeded && !copySame))
            {
                outcome = WrongBytes;
            }
            else if (run.Hang is not null)
            {
                outcome = Hang;
            }
            else if (run.SinkSucceeded && check.Complete && copySame)
            {
                outcome = Identical;
            }
            else if (run.LastSinkFailure is { Clear: true } && check.Readable && inspectClean is not false)
            {
                outcome = ClearFailure;
            }
            else
            {
                outcome = UnclearFailure;
            }
            var excerpt = outcome is Identical or ClearFailure && !stackTrace ? null : Excerpt(run.Stderr);
            return new ChaosRunResult(index, ChaosPlan.Key(plan.Fault), plan.Describe(), run.Applied, outcome,
                Math.Round(clock.Elapsed.TotalSeconds, 2), run.Exits.Count(e => e.Process.StartsWith("sink", StringComparison.Ordinal)),
                run.Exits.Count(e => e.Process.StartsWith("source", StringComparison.Ordinal)),
                check.PresentChunks, check.TotalChunks, check.WrongChunks, inspectClean, stackTrace, run.Hang, check.Error,
                run.Exits, run.Events, excerpt);
        }
        finally
        {
            await run.DisposeAsync();
            DeleteQuietly(Path.Combine(settings.WorkDir, $"run-{index}"));
        }
    }

    /// <summary>`inspect --store DIR --verify` as an operator would run it: exit 0 = every present chunk re-hashes to its manifest hash.</summary>
    private static async Task<bool> InspectVerifyAsync(string store, CancellationToken ct)
    {
        await using var inspect = RunningProcess.Start(ProcessCommand.ThisProgram("inspect", ["inspect", "--store", store, "--verify", "--json"]));
        return await inspect.WaitAsync(TimeSpan.FromMinutes(5), ct) == 0;
    }

    /// <summary>The stderr lines that matter for a report: stack traces, errors, the last lines of each process.</summary>
    private static string Excerpt(IReadOnlyList<string> stderr)
    {
        var parts = stderr.Select(s =>
        {
            var lines = s.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var keep = lines.Length <= 12 ? lines : [.. lines.Take(2), "…", .. lines.TakeLast(10)];
            return string.Join('\n', keep.Select(l => l.Length > 400 ? l[..400] + "…" : l));
        });
        return string.Join('\n', parts);
    }

    private static void DeleteQuietly(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>The bench itself cannot run (the fault-free reference failed, nothing to run): one line, exit 1.</summary>
internal sealed class ChaosBenchException(string message) : Exception(message);
