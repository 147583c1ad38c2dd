using System.Diagnostics;
using System.Net;
using System.Text.Json;
using StreamClone.Perf.Faults;
using StreamClone.Processes;

namespace StreamClone.Host.Bench;

/// <summary>Settings shared by every run of `bench chaos`.</summary>
internal sealed record ChaosSettings(
    string Image, string WorkDir, TimeSpan HangTimeout, TimeSpan RunTimeout, int MaxRestarts, int ProbeReads)
{
    /// <summary>--pki/--node/--insecure for every source and sink process (<see cref="Commands.TransportSecurityOptions.ChildArguments"/>).</summary>
    public IReadOnlyList<string> SecurityArguments { get; init; } = [];
}

/// <summary>How a process of a run ended.</summary>
internal sealed record ChaosExit(string Process, int Code, bool KilledByBench, bool Clear, string LastLine);

/// <summary>
/// One chaos run: a source process, a fault proxy, a sink process into a fresh store; the planned
/// fault at its moment; then a supervisor's recovery (a killed or failed process is restarted, at
/// most <see cref="ChaosSettings.MaxRestarts"/> times each) until the sink succeeds, gives up, or
/// nothing moves for <see cref="ChaosSettings.HangTimeout"/>. Disposing kills every process, closes
/// the proxy and unmounts the run's tmpfs, whatever happened (also on Ctrl+C).
/// </summary>
internal sealed partial class ChaosRun : IAsyncDisposable
{
    private readonly ChaosSettings _settings;
    private readonly ChaosPlan? _plan;
    private readonly ChaosReference? _reference;
    private readonly string _dir;
    private readonly List<ChaosExit> _exits = [];
    private readonly List<string> _events = [];
    private readonly List<string> _stderr = [];
    private readonly HashSet<RunningProcess> _killed = [];
    private readonly List<RunningProcess> _started = [];
    private FaultProxy? _proxy;
    private RunningProcess? _source;
    private RunningProcess? _sink;
    private TmpfsMount? _mount;
    private int _sourceStarts;
    private int _sinkStarts;
    private bool _applied;

    public ChaosRun(ChaosSettings settings, int index, ChaosPlan? plan, ChaosReference? reference)
    {
        _settings = settings;
        _plan = plan;
        _reference = reference;
        Index = index;
        _dir = Path.Combine(settings.WorkDir, $"run-{index}");
        Store = Path.Combine(_dir, "store");
        // One id for every source process of the run, so a restarted source offers the same snapshot and the sink resumes it.
        SnapshotId = $"chaos-{index}";
    }

    public int Index { get; }

    public string Store { get; }

    public string SnapshotId { get; }

    /// <summary>Path of the copy a successful sink reported, or null.</summary>
    public string? CopyPath { get; private set; }

    /// <summary>The sink exited 0.</summary>
    public bool SinkSucceeded { get; private set; }

    /// <summary>No progress and no exit within the hang timeout, or no end within the run timeout.</summary>
    public string? Hang { get; private set; }

    /// <summary>The last sink failure (not a kill by the bench), or null.</summary>
    public ChaosExit? LastSinkFailure { get; private set; }

    public IReadOnlyList<ChaosExit> Exits => _exits;

    public IReadOnlyList<string> Events
    {
        get { lock (_events) { return [.. _events]; } }
    }

    // The fault task and the supervisor both note events.
    private void AddEvent(string text)
    {
        lock (_events)
        {
            _events.Add(text);
        }
    }

    public bool Applied => _applied || (_proxy?.History.Any(c => c.Faults.Any(f => f.Applied)) ?? false);

    public FaultProxy Proxy => _proxy ?? throw new InvalidOperationException("the run has not started");

    /// <summary>Every process's stderr, for the report's excerpts.</summary>
    public IReadOnlyList<string> Stderr => _stderr;

    public async Task RunAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(_dir);
        var clock = Stopwatch.StartNew();
        if (_plan?.Fault == ChaosFault.DiskFull)
        {
            // Room for the whole offer (the sink checks free space before it takes one), so the disk
            // fills mid-stream only when a neighbour takes the space: the case a busy host meets.
            var size = new FileInfo(_settings.Image).Length + (16L << 20);
            _mount = await TmpfsMount.MountAsync(Store, size, ct);
            AddEvent($"store on tmpfs of {size} bytes");
        }
        var port = await StartSourceAsync(ct);
        _proxy = new FaultProxy(new IPEndPoint(IPAddress.Loopback, port));
        InjectProxyFault();
        StartSink();
        using var faultStop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var fault = ApplyTimedFaultAsync(faultStop.Token);
        try
        {
            await SuperviseAsync(clock, ct);
        }
        finally
        {
            await faultStop.CancelAsync();
            try
            {
                await fault;
            }
            catch (OperationCanceledException)
            {
            }
            await StopAllAsync();
        }
    }

    private void InjectProxyFault()
    {
        if (_plan is null)
        {
            return;
        }
        ProxyFault? fault = _plan.Fault switch
        {
            ChaosFault.CorruptBytes => ProxyFault.Flip(_plan.Offset),
            ChaosFault.DropBytes => ProxyFault.Drop(_plan.Offset, _plan.Length),
            ChaosFault.DuplicateBytes => ProxyFault.Duplicate(_plan.Offset, _plan.Length),
            ChaosFault.ReorderBytes => ProxyFault.Reorder(_plan.Offset, _plan.Length),
            ChaosFault.StopReading => ProxyFault.StallAfter(_plan.Offset),
            _ => null,
        };
        if (fault is not null)
        {
            Proxy.Inject((int)_plan.Lane, _plan.Direction, fault);
        }
    }

    /// <summary>Kills and cuts happen once the sink has received the planned number of bulk bytes.</summary>
    private async Task ApplyTimedFaultAsync(CancellationToken ct)
    {
        if (_plan?.Fault is not (ChaosFault.KillSource or ChaosFault.KillSink or ChaosFault.CutLane or ChaosFault.DiskFull))
        {
            return;
        }
        await Proxy.WhenBytesAsync((int)ChaosLane.Bulk, ProxyDirection.Downstream, _plan.Offset, ct);
        switch (_plan.Fault)
        {
            case ChaosFault.DiskFull:
                await FillDiskAsync(ct);
                break;
            case ChaosFault.KillSource:
                Kill(_source!);
                break;
            case ChaosFault.KillSink:
                Kill(_sink!);
                break;
            default:
                var lane = Proxy.History.FirstOrDefault(c => c.Number == (int)_plan.Lane);
                if (lane is null)
                {
                    AddEvent($"{_plan.Lane} lane not open at the moment: nothing to cut");
                    return;
                }
                lane.Close(_plan.Reset);
                break;
        }
        _applied = true;
        AddEvent($"{ChaosPlan.Key(_plan.Fault)} applied at {Proxy.History[0].BytesRead(ProxyDirection.Downstream)} bulk bytes");
    }

    private void Kill(RunningProcess process)
    {
        lock (_killed)
        {
            _killed.Add(process);
        }
        process.Kill();
    }

    private bool WasKilled(RunningProcess process)
    {
        lock (_killed)
        {
            return _killed.Contains(process);
        }
    }

    private async Task<int> StartSourceAsync(CancellationToken ct)
    {
        var portFile = Path.Combine(_dir, $"port-{_sourceStarts}");
        _sourceStarts++;
        _source = RunningProcess.Start(ProcessCommand.ThisProgram($"source#{_sourceStarts}",
        [
            "source", "--image", _settings.Image, "--listen", "127.0.0.1:0", "--port-file", portFile,
            "--snapshot-id", SnapshotId, "--json", .. _settings.SecurityArguments,
        ]));
        _started.Add(_source);
        var port = await PortFile.WaitAsync(portFile, _source, TimeSpan.FromSeconds(60), ct);
        ct.ThrowIfCancellationRequested();
        return port;
    }

    private string NeighbourFile => System.IO.Path.Combine(Store, "neighbour.fill");

    /// <summary>Another tenant writes until the store's file system is full.</summary>
    private async Task FillDiskAsync(CancellationToken ct)
    {
        _applied = true;
        var block = new byte[1 << 20];
        await using var file = new FileStream(NeighbourFile, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        try
        {
            while (true)
            {
                await file.WriteAsync(block, ct);
            }
        }
        catch (IOException)
        {
            // ENOSPC: full, which is the fault.
        }
        AddEvent("a neighbour filled the store's disk");
    }

    private void StartSink()
    {
        _sinkStarts++;
        _sink = RunningProcess.Start(ProcessCommand.ThisProgram($"sink#{_sinkStarts}",
        [
            // No free-space margin: the store's tmpfs is sized to the offer, and the fault is what fills it.
            "sink", "--connect", $"127.0.0.1:{Proxy.EndPoint.Port}", "--store", Store, "--json", "--free-space-margin", "0",
            "--probe-reads", _settings.ProbeReads.ToString(System.Globalization.CultureInfo.InvariantCulture), "--probe-spacing-ms", "5",
            .. _settings.SecurityArguments,
        ]));
        _started.Add(_sink);
    }

    /// <summary>
    /// The supervisor: restarts what died (source first, so a restarted sink finds it), until the sink
    /// exits 0, a process used up its restarts, or nothing moved (proxy bytes, journal bytes, exits)
    /// for the hang timeout.
    /// </summary>
    private async Task SuperviseAsync(Stopwatch clock, CancellationToken ct)
    {
        var progress = Stopwatch.StartNew();
        var lastMark = -1L;
        while (true)
        {
            if (_source is null || _sink is null)
            {
                throw new InvalidOperationException("the run has not started");
            }
            using (var tick = CancellationTokenSource.CreateLinkedTokenSource(ct))
            {
                tick.CancelAfter(TimeSpan.FromMilliseconds(200));
                try
                {
                    await Task.WhenAny(_sink.Exited.WaitAsync(tick.Token), _source.Exited.WaitAsync(tick.Token));
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                }
            }
            ct.ThrowIfCancellationRequested();

            if (_source.HasExited)
            {
                await _source.Exited.WaitAsync(ct);
                RecordExit(_source, isSink: false);
                if (_sourceStarts > _settings.MaxRestarts)
                {
                    AddEvent("source out of restarts");
                    return;
                }
                Proxy.Target = new IPEndPoint(IPAddress.Loopback, await StartSourceAsync(ct));
                AddEvent($"restarted the source ({_source.Name})");
                progress.Restart();
            }
            if (_sink.HasExited)
            {
                await _sink.Exited.WaitAsync(ct);
                var exit = RecordExit(_sink, isSink: true);
                if (exit.Code == 0)
                {
                    SinkSucceeded = true;
                    CopyPath = ReadCopyPath(_sink.LastLine);
                    return;
                }
                if (_sinkStarts > _settings.MaxRestarts)
                {
                    AddEvent("sink out of restarts");
                    return;
                }
                if (_mount is not null && !exit.KilledByBench && File.Exists(NeighbourFile))
                {
                    // The operator makes room, then the sink resumes what it stored.
                    File.Delete(NeighbourFile);
                    AddEvent("made room on the store's tmpfs");
                }
                StartSink();
                AddEvent($"restarted the sink ({_sink.Name})");
                progress.Restart();
            }

            var mark = Proxy.TotalBytes + JournalBytes();
            if (mark != lastMark)
            {
                lastMark = mark;
                progress.Restart();
            }
            if (progress.Elapsed > _settings.HangTimeout)
            {
                Hang = $"no progress and no exit for {_settings.HangTimeout.TotalSeconds:F0} s";
                return;
            }
            if (clock.Elapsed > _settings.RunTimeout)
            {
                Hang = $"not finished within the run timeout of {_settings.RunTimeout.TotalSeconds:F0} s";
                return;
            }
        }
    }

    private ChaosExit RecordExit(RunningProcess process, bool isSink)
    {
        var stderr = process.Stderr;
        var killed = WasKilled(process);
        var clear = ChaosCheck.IsClearFailure(stderr, out var line);
        var exit = new ChaosExit(process.Name, process.ExitCode, killed, process.ExitCode == 0 || clear, line);
        _exits.Add(exit);
        _stderr.Add($"--- {process.Name} (exit {process.ExitCode}{(killed ? ", killed by the bench" : "")}) ---\n{stderr}");
        if (isSink && exit.Code != 0 && !killed)
        {
            LastSinkFailure = exit;
        }
        return exit;
    }

    private static string? ReadCopyPath(string lastLine)
    {
        try
        {
            using var json = JsonDocument.Parse(lastLine);
            return json.RootElement.GetProperty("objects")[0].GetProperty("path").GetString();
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    private long JournalBytes()
    {
        var snapshots = Path.Combine(Store, "snapshots");
        try
        {
            return Directory.Exists(snapshots)
                ? Directory.EnumerateFiles(snapshots, "journal.log", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length)
                : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>Kills what still runs (the source serves until stopped) and records anything that ended on its own meanwhile.</summary>
    private async Task StopAllAsync()
    {
        foreach (var process in (RunningProcess?[])[_sink, _source])
        {
            if (process is null)
            {
                continue;
            }
            var ranOn = !process.HasExited;
            process.Kill();
            try
            {
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await process.Exited.WaitAsync(wait.Token);
            }
            catch (OperationCanceledException)
            {
            }
            if (process.HasExited && !_exits.Any(e => e.Process == process.Name))
            {
                if (ranOn)
                {
                    lock (_killed)
                    {
                        _killed.Add(process);
                    }
                }
                RecordExit(process, isSink: process == _sink);
            }
        }
        if (_proxy is not null)
        {
            await _proxy.DisposeAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopAllAsync();
        }
        finally
        {
            foreach (var process in _started)
            {
                await process.DisposeAsync();
            }
            if (_mount is not null)
            {
                await _mount.DisposeAsync();
            }
        }
    }
}
