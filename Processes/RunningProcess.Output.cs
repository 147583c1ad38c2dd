using System.Text;

namespace StreamClone.Processes;

public sealed partial class RunningProcess
{
    private readonly OutputLines _stdout;
    private readonly OutputLines _stderr;

    /// <summary>What the process wrote to stdout so far (the kept lines, each ending in '\n').</summary>
    public string Stdout => _stdout.Text;

    public string Stderr => _stderr.Text;

    public string[] StdoutLines => _stdout.Lines;

    /// <summary>The non-empty stderr lines, trimmed.</summary>
    public string[] StderrLines => [.. _stderr.Lines.Select(l => l.Trim()).Where(l => l.Length > 0)];

    /// <summary>The last non-empty stdout line: where --json commands print their summary.</summary>
    public string LastLine => _stdout.Lines.Select(l => l.Trim()).LastOrDefault(l => l.Length > 0) ?? "";

    /// <summary>The last lines of stderr (of stdout when stderr is empty) on one line, at most <paramref name="maxChars"/>:
    /// what a failure message quotes.</summary>
    public string OutputTail(int maxChars = 1500)
    {
        var lines = _stderr.Lines.Where(l => !string.IsNullOrWhiteSpace(l)).ToArray();
        if (lines.Length == 0)
        {
            lines = [.. _stdout.Lines.Where(l => !string.IsNullOrWhiteSpace(l))];
        }
        if (lines.Length == 0)
        {
            return "(no output)";
        }
        var text = string.Join(" | ", lines.Select(l => l.Trim()));
        return text.Length <= maxChars ? text : "…" + text[^maxChars..];
    }

    /// <summary>
    /// The first line of <paramref name="stream"/> (kept ones first, then new ones as they arrive) that
    /// <paramref name="match"/> accepts. An event, not a poll: the reader wakes the waiter on every line.
    /// <see cref="TimeoutException"/> after <paramref name="timeout"/>; <see cref="ProcessFailedException"/> if the
    /// process ends without printing one. Both quote the process's stderr.
    /// </summary>
    public async Task<string> WaitForLineAsync(OutputStream stream, Func<string, bool> match, TimeSpan timeout, CancellationToken ct = default)
    {
        var lines = stream == OutputStream.Stdout ? _stdout : _stderr;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        var next = 0L;
        while (true)
        {
            var (found, changed, ended) = lines.Find(match, ref next);
            if (found is not null)
            {
                return found;
            }
            if (ended)
            {
                throw new ProcessFailedException(
                    $"{Name} exited with {ExitCode} before printing the line waited for on {stream.ToString().ToLowerInvariant()}; stderr: {OutputTail()}")
                { ExitCode = ExitCode };
            }
            try
            {
                await changed.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException(
                    $"{Name} printed no matching line on {stream.ToString().ToLowerInvariant()} within {timeout.TotalSeconds:0.#} s; stderr: {OutputTail()}");
            }
        }
    }

    private static async Task ReadLinesAsync(StreamReader reader, OutputLines lines, Action<string>? onLine, Action<string>? onText)
    {
        var buffer = new char[4096];
        var partial = new StringBuilder();
        try
        {
            int read;
            while ((read = await reader.ReadAsync(buffer)) > 0)
            {
                onText?.Invoke(new string(buffer, 0, read));
                var rest = buffer.AsSpan(0, read);
                int newline;
                while ((newline = rest.IndexOf('\n')) >= 0)
                {
                    partial.Append(rest[..newline]);
                    Emit(partial.ToString());
                    partial.Clear();
                    rest = rest[(newline + 1)..];
                }
                partial.Append(rest);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            // The pipe went away with the process.
        }
        if (partial.Length > 0)
        {
            Emit(partial.ToString());
        }

        void Emit(string line)
        {
            line = line.TrimEnd('\r');
            lines.Add(line);
            onLine?.Invoke(line);
        }
    }

    /// <summary>The kept lines of one stream, and the signal that wakes line waiters.</summary>
    private sealed class OutputLines(int kept)
    {
        private readonly Lock _lock = new();
        private readonly List<string> _lines = [];
        private long _dropped;
        private bool _ended;
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Text
        {
            get
            {
                lock (_lock)
                {
                    var text = new StringBuilder();
                    foreach (var line in _lines)
                    {
                        text.Append(line).Append('\n');
                    }
                    return text.ToString();
                }
            }
        }

        public string[] Lines
        {
            get
            {
                lock (_lock)
                {
                    return [.. _lines];
                }
            }
        }

        public void Add(string line)
        {
            TaskCompletionSource changed;
            lock (_lock)
            {
                _lines.Add(line);
                if (_lines.Count > kept)
                {
                    // Drop down to half at once: amortised O(1) per line however long the process prints.
                    var drop = _lines.Count - (kept / 2);
                    _lines.RemoveRange(0, drop);
                    _dropped += drop;
                }
                changed = _changed;
                _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            changed.TrySetResult();
        }

        public void Complete()
        {
            TaskCompletionSource changed;
            lock (_lock)
            {
                _ended = true;
                changed = _changed;
            }
            changed.TrySetResult();
        }

        /// <summary>Scans the lines numbered <paramref name="next"/> and above (advancing it); otherwise returns the task
        /// that completes on the next line and whether the stream has ended.</summary>
        public (string? Found, Task Changed, bool Ended) Find(Func<string, bool> match, ref long next)
        {
            lock (_lock)
            {
                for (var i = Math.Max(next, _dropped); i < _dropped + _lines.Count; i++)
                {
                    if (match(_lines[(int)(i - _dropped)]))
                    {
                        next = i + 1;
                        return (_lines[(int)(i - _dropped)], Task.CompletedTask, false);
                    }
                }
                next = _dropped + _lines.Count;
                return (null, _changed.Task, _ended);
            }
        }
    }
}

/// <summary>Which of a child's output streams.</summary>
public enum OutputStream
{
    Stdout,
    Stderr,
}
