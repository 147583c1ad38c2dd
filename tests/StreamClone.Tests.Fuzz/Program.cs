using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using StreamClone.Processes;
using StreamClone.Tests.Fuzz;
using StreamClone.Tests.Fuzz.Targets;

// perf/fuzz.sh runs `run`; `run` starts one `child` process per target so that a SIGSEGV, a stack
// overflow or a hang ends only that child and is counted as a crash; `repro` replays one saved input.
return args switch
{
    ["run", .. var rest] => await Runner.RunAsync(Options.Parse(rest)),
    ["child", var name, .. var rest] => Runner.Child(name, Options.Parse(rest)),
    ["repro", var name, var file] => Runner.Repro(name, file),
    ["list"] => Runner.List(),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: run --seconds N [--target T] [--crashes DIR] [--parallel P] | child T ... | repro T FILE | list");
    return 2;
}

internal sealed record Options(double Seconds, string? Target, string Crashes, int Parallel, string? Status, int Seed, bool Resume = false)
{
    public static Options Parse(string[] args)
    {
        var o = new Options(60, null, Path.Combine("perf", "fuzz-crashes"), 2, null, Environment.TickCount);
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            o = args[i] switch
            {
                "--seconds" => o with { Seconds = double.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--target" => o with { Target = args[i + 1] },
                "--crashes" => o with { Crashes = args[i + 1] },
                "--parallel" => o with { Parallel = int.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--status" => o with { Status = args[i + 1] },
                "--seed" => o with { Seed = int.Parse(args[i + 1], CultureInfo.InvariantCulture) },
                "--resume" => o with { Resume = bool.Parse(args[i + 1]) },
                _ => throw new ArgumentException($"unknown option {args[i]}"),
            };
        }
        return o;
    }
}

internal static class Runner
{
    public static int List()
    {
        foreach (var (name, _) in FuzzTargets.All)
        {
            Console.WriteLine(name);
        }
        return 0;
    }

    public static async Task<int> RunAsync(Options options)
    {
        var names = FuzzTargets.All.Select(t => t.Name).Where(n => options.Target is null || n == options.Target).ToList();
        if (names.Count == 0)
        {
            Console.Error.WriteLine($"fuzz: no target named {options.Target}; `list` shows them");
            return 2;
        }
        var failed = 0;
        using var slots = new SemaphoreSlim(Math.Max(1, options.Parallel));
        var print = new Lock();
        await Task.WhenAll(names.Select(async name =>
        {
            await slots.WaitAsync();
            try
            {
                var result = await RunTargetAsync(name, options);
                lock (print)
                {
                    Console.WriteLine(JsonSerializer.Serialize(result));
                    if (result.crashes > 0)
                    {
                        failed++;
                    }
                }
            }
            finally
            {
                slots.Release();
            }
        }));
        return failed == 0 ? 0 : 1;
    }

    /// <summary>Runs children until the time is used up; a child that dies is a crash and is restarted.</summary>
    private static async Task<TargetResult> RunTargetAsync(string name, Options options)
    {
        var crashDir = Path.Combine(options.Crashes, name);
        Directory.CreateDirectory(crashDir);
        var statusPath = Path.Combine(crashDir, ".status");
        var target = FuzzTargets.Create(name);
        long execs = 0, crashes = 0;
        var clock = Stopwatch.StartNew();
        var seed = options.Seed;
        while (true)
        {
            var left = options.Seconds - clock.Elapsed.TotalSeconds;
            using var status = new FuzzStatus(statusPath, target.MaxInputLength, create: true);
            var exit = await RunChildAsync(name, Math.Max(left, 0), statusPath, crashDir, seed, resume: seed != options.Seed);
            seed++;
            execs += status.Execs;
            crashes += status.Crashes;
            if (exit == 0)
            {
                break;
            }
            crashes++;
            var input = status.GetCurrent();
            var file = Path.Combine(crashDir, $"died-{DateTime.UtcNow:HHmmssfff}-exit{exit}.bin");
            await File.WriteAllBytesAsync(file, input);
            Console.Error.WriteLine($"fuzz {name}: child died (exit {exit}) on a {input.Length}-byte input, saved to {file}");
            if (clock.Elapsed.TotalSeconds >= options.Seconds)
            {
                break;
            }
        }
        File.Delete(statusPath);
        return new TargetResult(name, execs, crashes, Math.Round(clock.Elapsed.TotalSeconds, 1));
    }

    private static async Task<int> RunChildAsync(string name, double seconds, string status, string crashes, int seed, bool resume)
    {
        // Removed after the child, however it ended (see FuzzScratch).
        var scratch = FuzzScratch.CreateForChild(name);
        try
        {
            return await RunChildInAsync(name, seconds, status, crashes, seed, resume, scratch);
        }
        finally
        {
            FuzzScratch.Remove(scratch);
        }
    }

    private static async Task<int> RunChildInAsync(string name, double seconds, string status, string crashes, int seed, bool resume, string scratch)
    {
        var command = ProcessCommand.ThisProgram($"fuzz child {name}",
            ["child", name, "--seconds", seconds.ToString(CultureInfo.InvariantCulture), "--status", status, "--crashes", crashes,
             "--seed", seed.ToString(CultureInfo.InvariantCulture), "--resume", resume ? "true" : "false"]) with
        {
            // The child's lines are this runner's: passed through as they come.
            StdoutLine = Console.Out.WriteLine,
            StderrLine = Console.Error.WriteLine,
            KeptLines = 0,
            Environment = new Dictionary<string, string?> { [FuzzScratch.Variable] = scratch },
        };
        await using var child = RunningProcess.Start(command);
        // The child's own watchdog ends a hung input after FuzzLoop.HangLimit; this guard covers a child
        // too broken to run its watchdog.
        try
        {
            return await child.Exited.WaitAsync(TimeSpan.FromSeconds(seconds + 120));
        }
        catch (TimeoutException)
        {
            child.Kill();
            await child.Exited;
            return -1;
        }
    }

    public static int Child(string name, Options options)
    {
        var target = FuzzTargets.Create(name);
        using var status = options.Status is null ? null : new FuzzStatus(options.Status, target.MaxInputLength, create: false);
        var loop = new FuzzLoop(target, options.Crashes, status);
        loop.Run(TimeSpan.FromSeconds(options.Seconds), long.MaxValue, options.Seed, runSeeds: !options.Resume);
        (target as IDisposable)?.Dispose();
        return 0;
    }

    public static int Repro(string name, string file)
    {
        var target = FuzzTargets.Create(name);
        var input = File.ReadAllBytes(file);
        try
        {
            target.Run(input);
            Console.WriteLine($"{name}: passes ({input.Length} bytes)");
            return 0;
        }
        catch (Exception ex) when (target.IsExpected(ex))
        {
            Console.WriteLine($"{name}: rejected as expected: {ex.GetType().Name}: {ex.Message}");
            return 0;
        }
        catch (Exception ex)
        {
            Console.WriteLine($"{name}: CRASH {ex}");
            return 1;
        }
        finally
        {
            (target as IDisposable)?.Dispose();
        }
    }
}

#pragma warning disable IDE1006 // JSON member names are the report's field names.
internal sealed record TargetResult(string target, long execs, long crashes, double seconds);
#pragma warning restore IDE1006
