using System.Runtime.CompilerServices;

namespace StreamClone.Shared.Qemu;

public sealed partial class VmLauncher
{
    /// <summary>Console lines kept for waiters; a 100 ms ticker fills this in about 3 h.</summary>
    private const int MaxConsoleLines = 100_000;

    private readonly Lock _consoleLock = new();
    private readonly Queue<(long Number, string Text)> _console = new();
    private long _consoleCount;
    private TaskCompletionSource _consoleArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _consoleEnded;

    /// <summary>Raised on the console reader's thread for every line (without CR/LF). Keep handlers short.</summary>
    public event Action<string>? ConsoleLine;

    /// <summary>Number of console lines so far; pass it as <c>afterLine</c> to wait for new lines only.</summary>
    public long ConsoleLineCount
    {
        get
        {
            lock (_consoleLock)
                return _consoleCount;
        }
    }

    /// <summary>The console lines buffered so far (the last 100 000).</summary>
    public IReadOnlyList<string> GetConsoleLines()
    {
        lock (_consoleLock)
            return _console.Select(l => l.Text).ToList();
    }

    /// <summary>Console lines numbered above <paramref name="afterLine"/> (1-based), buffered then live,
    /// until QEMU closes its console (the VM exited) or <paramref name="ct"/> fires.</summary>
    public async IAsyncEnumerable<string> ReadConsoleAsync(long afterLine = 0, [EnumeratorCancellation] CancellationToken ct = default)
    {
        var last = afterLine;
        var batch = new List<(long Number, string Text)>();
        while (true)
        {
            Task arrived;
            bool ended;
            lock (_consoleLock)
            {
                foreach (var line in _console)
                {
                    if (line.Number > last)
                        batch.Add(line);
                }
                arrived = _consoleArrived.Task;
                ended = _consoleEnded;
            }
            foreach (var line in batch)
            {
                last = line.Number;
                yield return line.Text;
            }
            if (batch.Count > 0)
            {
                batch.Clear();
                continue;
            }
            if (ended)
                yield break;
            await arrived.WaitAsync(ct);
        }
    }

    /// <summary>
    /// The first console line after <paramref name="afterLine"/> matching <paramref name="predicate"/>.
    /// Throws <see cref="TimeoutException"/> (with the last lines seen) after <paramref name="timeout"/>, and
    /// <see cref="VmStartException"/> with QEMU's stderr if the VM exits first.
    /// </summary>
    public async Task<string> WaitForConsoleAsync(Func<string, bool> predicate, TimeSpan timeout, long afterLine = 0,
        CancellationToken ct = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await foreach (var line in ReadConsoleAsync(afterLine, cts.Token))
            {
                if (predicate(line))
                    return line;
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException(
                $"no matching console line from the VM within {timeout.TotalSeconds:0.#} s; last lines: {ConsoleTail()}");
        }
        await ((Task)Exited).WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        throw new VmStartException($"QEMU exited ({ExitDescription()}) before the expected console line; stderr: {StdErrTail()}; console: {ConsoleTail()}");
    }

    private async Task ReadConsoleLoopAsync(StreamReader stdout, StreamWriter log)
    {
        try
        {
            while (await stdout.ReadLineAsync() is { } raw)
            {
                var line = raw.TrimEnd('\r');
                await log.WriteLineAsync(line);
                await log.FlushAsync();
                TaskCompletionSource wake;
                lock (_consoleLock)
                {
                    _console.Enqueue((++_consoleCount, line));
                    while (_console.Count > MaxConsoleLines)
                        _console.Dequeue();
                    wake = _consoleArrived;
                    _consoleArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                }
                wake.TrySetResult();
                ConsoleLine?.Invoke(line);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // QEMU's stdout went away with the process.
        }
        finally
        {
            await log.DisposeAsync();
            TaskCompletionSource wake;
            lock (_consoleLock)
            {
                _consoleEnded = true;
                wake = _consoleArrived;
            }
            wake.TrySetResult();
        }
    }

    private string ConsoleTail(int lines = 5)
    {
        lock (_consoleLock)
            return _console.Count == 0 ? "(none)" : string.Join(" | ", _console.Skip(Math.Max(0, _console.Count - lines)).Select(l => l.Text));
    }
}
