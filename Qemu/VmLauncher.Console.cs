using System.Text;

namespace StreamClone.Qemu;

public sealed partial class VmLauncher
{
    /// <summary>Console lines kept for waiters; a 100 ms ticker fills this in about 3 h.</summary>
    private const int MaxConsoleLines = 100_000;

    private readonly ConsoleRecorder _console;

    /// <summary>Raised on the console reader's thread for every line (without CR/LF). Keep handlers short.</summary>
    public event Action<string>? ConsoleLine;

    /// <summary>Number of console lines so far; pass it as <c>afterLine</c> to wait for new lines only.</summary>
    public long ConsoleLineCount => _console.Lines.LastSequence;

    /// <summary>The console lines buffered so far (the last 100 000).</summary>
    public IReadOnlyList<string> GetConsoleLines() => _console.Lines.Snapshot();

    /// <summary>Console lines numbered above <paramref name="afterLine"/> (1-based), buffered then live,
    /// until QEMU closes its console (the VM exited) or <paramref name="ct"/> fires.</summary>
    public IAsyncEnumerable<string> ReadConsoleAsync(long afterLine = 0, CancellationToken ct = default) =>
        _console.Lines.ReadAsync(afterLine, ct);

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

    /// <summary>Types one line into the guest's serial console (QEMU's stdin; the test guest reads requests there).</summary>
    public async Task WriteConsoleLineAsync(string line, CancellationToken ct = default)
    {
        await _process.Stdin.WriteAsync((line + "\n").AsMemory(), ct);
        await _process.Stdin.FlushAsync(ct);
    }

    /// <summary>
    /// QEMU's stdout (the guest's serial console) as it arrives: each line goes to console.log, to the buffer the
    /// waits read, and to <see cref="ConsoleLine"/> once the launcher exists. Made before QEMU starts.
    /// </summary>
    private sealed class ConsoleRecorder(string logPath) : IDisposable
    {
        private readonly Lock _lock = new();
        private readonly StreamWriter _log = new(logPath, append: false, new UTF8Encoding(false));
        private bool _completed;

        /// <summary>Set once the launcher is built; lines before that have no subscriber to tell.</summary>
        public VmLauncher? Owner;

        public string LogPath => logPath;

        public SequencedBuffer<string> Lines { get; } = new(MaxConsoleLines);

        public void Add(string line)
        {
            lock (_lock)
            {
                if (_completed)
                    return;
                _log.WriteLine(line);
                _log.Flush();
            }
            Lines.Add(_ => line);
            Volatile.Read(ref Owner)?.ConsoleLine?.Invoke(line);
        }

        /// <summary>QEMU exited and its console was read to the end (or abandoned after the drain limit).</summary>
        public void Complete()
        {
            lock (_lock)
            {
                if (_completed)
                    return;
                _completed = true;
                _log.Dispose();
            }
            Lines.Complete();
        }

        public void Dispose() => Complete();
    }

    private string ConsoleTail(int lines = 5)
    {
        var all = _console.Lines.Snapshot();
        return all.Count == 0 ? "(none)" : string.Join(" | ", all.Skip(Math.Max(0, all.Count - lines)));
    }
}
