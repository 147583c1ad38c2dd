using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace StreamClone.Tests.Fuzz;

/// <summary>
/// Runs one target in this process: every seed, then mutations for the given time. An input whose
/// outcome (pass, or which expected error with which message shape) was not seen before joins the
/// corpus: without coverage instrumentation, a new error message is the cheapest sign of a new path.
/// Unexpected exceptions are saved (one file per distinct crash site) and counted; a hang past
/// <see cref="HangLimit"/> ends the process, so the runner saves the input from the status file.
/// </summary>
public sealed partial class FuzzLoop
{
    /// <summary>Far beyond any one exec (milliseconds), short enough that a 60 s run still reports a hang.</summary>
    public static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(10);

    private const int MaxCorpus = 4096;
    private readonly IFuzzTarget _target;
    private readonly string? _crashDir;
    private readonly FuzzStatus? _status;
    private readonly HashSet<string> _outcomes = [];
    private readonly HashSet<string> _crashSites = [];
    private readonly List<byte[]> _corpus = [];
    private long _execStarted = -1;

    public FuzzLoop(IFuzzTarget target, string? crashDir, FuzzStatus? status)
    {
        _target = target;
        _crashDir = crashDir;
        _status = status;
    }

    public long Execs { get; private set; }

    public long Crashes { get; private set; }

    /// <summary>The first unexpected exception, for the smoke test's message.</summary>
    public Exception? FirstCrash { get; private set; }

    /// <summary>
    /// In-process runs (the unit tests' smoke test): each input runs on the thread pool and one that takes
    /// longer than this is a crash that ends the run, its task left behind. Null: the watchdog ends the process.
    /// </summary>
    public TimeSpan? ExecTimeout { get; init; }

    private bool _hung;

    /// <summary>
    /// Seeds first (unless <paramref name="runSeeds"/> is false: after a restart they ran in the child that
    /// died), then mutations until <paramref name="duration"/> or <paramref name="maxExecs"/>.
    /// </summary>
    public void Run(TimeSpan duration, long maxExecs, int seed, bool runSeeds = true)
    {
        using var watchdog = ExecTimeout is null ? new Timer(_ => CheckHang(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1)) : null;
        var clock = Stopwatch.StartNew();
        foreach (var input in _target.Seeds())
        {
            _corpus.Add(input);
            if (runSeeds && !_hung)
            {
                Execute(input);
            }
        }
        if (_corpus.Count == 0)
        {
            _corpus.Add([]);
        }
        var mutator = new Mutator(new Random(seed), _target.Dictionary, _target.MaxInputLength);
        while (clock.Elapsed < duration && Execs < maxExecs && !_hung)
        {
            var input = mutator.Mutate(_corpus);
            if (Execute(input))
            {
                if (_corpus.Count < MaxCorpus)
                {
                    _corpus.Add(input);
                }
                else
                {
                    _corpus[Random.Shared.Next(_corpus.Count)] = input;
                }
            }
        }
    }

    /// <summary>Runs one input; true when its outcome is new.</summary>
    public bool Execute(byte[] input)
    {
        _status?.SetCurrent(input);
        Volatile.Write(ref _execStarted, Stopwatch.GetTimestamp());
        string outcome;
        try
        {
            if (ExecTimeout is { } limit)
            {
                var run = Task.Run(() => _target.Run(input));
                if (!((IAsyncResult)run).AsyncWaitHandle.WaitOne(limit))
                {
                    _hung = true;
                    throw new TimeoutException($"{_target.Name}: one input ran longer than {limit.TotalSeconds} s");
                }
                run.GetAwaiter().GetResult();
            }
            else
            {
                _target.Run(input);
            }
            outcome = "ok";
        }

        catch (Exception ex) when (_target.IsExpected(ex))
        {
            outcome = ex.GetType().Name + ":" + Shape(ex.Message);
        }
        catch (Exception ex)
        {
            Crashes++;
            FirstCrash ??= ex;
            SaveCrash(input, ex);
            outcome = "crash";
        }
        finally
        {
            Volatile.Write(ref _execStarted, -1);
        }
        Execs++;
        if (_status is not null)
        {
            _status.Execs = Execs;
            _status.Crashes = Crashes;
        }
        return _outcomes.Add(outcome);
    }

    private void SaveCrash(byte[] input, Exception ex)
    {
        var frame = new StackTrace(ex).GetFrames().FirstOrDefault(f => f.GetMethod()?.DeclaringType?.Namespace?.StartsWith("StreamClone", StringComparison.Ordinal) == true);
        var site = $"{ex.GetType().Name} at {frame?.GetMethod()?.DeclaringType?.Name}.{frame?.GetMethod()?.Name}";
        if (_crashDir is null || !_crashSites.Add(site))
        {
            return;
        }
        Directory.CreateDirectory(_crashDir);
        var name = "crash-" + Convert.ToHexStringLower(SHA256.HashData(input))[..12];
        File.WriteAllBytes(Path.Combine(_crashDir, name + ".bin"), input);
        File.WriteAllText(Path.Combine(_crashDir, name + ".txt"), $"{_target.Name}: {site}\n{ex}\n");
        Console.Error.WriteLine($"fuzz {_target.Name}: crash {site}: {ex.Message} (input {name}.bin)");
    }

    private void CheckHang()
    {
        var started = Volatile.Read(ref _execStarted);
        if (started > 0 && Stopwatch.GetElapsedTime(started) > HangLimit)
        {
            // The runner saves the input from the status file; a hung decoder cannot be unwound from here.
            Environment.FailFast($"fuzz {_target.Name}: one input ran longer than {HangLimit.TotalSeconds} s");
        }
    }

    /// <summary>The message with numbers and quoted text blanked, so "length 17" and "length 18" are one outcome.</summary>
    private static string Shape(string message)
    {
        var shape = Numbers().Replace(message, "#");
        shape = Quoted().Replace(shape, "'…'");
        return shape.Length > 80 ? shape[..80] : shape;
    }

    [GeneratedRegex("[0-9]+")]
    private static partial Regex Numbers();

    [GeneratedRegex("'[^']*'|\"[^\"]*\"")]
    private static partial Regex Quoted();
}
