namespace StreamClone.Processes;

/// <summary>
/// Waits for a condition on files (a port file written, a journal grown, a directory made) by re-checking it on
/// every change the kernel reports under a directory (inotify through <see cref="FileSystemWatcher"/>), instead of
/// sleeping between checks.
/// </summary>
public static class FileWatch
{
    /// <summary>
    /// Returns once <paramref name="condition"/> holds. Checked at once, then after each batch of changes under
    /// <paramref name="directory"/> (which must exist; subdirectories included). <see cref="TimeoutException"/> after
    /// <paramref name="timeout"/>, and <see cref="InvalidOperationException"/> when <paramref name="abandon"/> (say a
    /// process's exit) completes first and the condition still fails; both carry <paramref name="describe"/>'s text.
    /// </summary>
    public static async Task UntilAsync(string directory, Func<bool> condition, TimeSpan timeout, Func<string> describe,
        Task? abandon = null, CancellationToken ct = default)
    {
        var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var watcher = new FileSystemWatcher(directory)
        {
            IncludeSubdirectories = true,
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.DirectoryName | NotifyFilters.Size | NotifyFilters.LastWrite,
        };
        void Wake() => Volatile.Read(ref changed).TrySetResult();
        watcher.Created += (_, _) => Wake();
        watcher.Changed += (_, _) => Wake();
        watcher.Renamed += (_, _) => Wake();
        watcher.Deleted += (_, _) => Wake();
        // An overflowed event queue lost changes: check again.
        watcher.Error += (_, _) => Wake();
        watcher.EnableRaisingEvents = true;

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        while (true)
        {
            // A fresh signal before the check: a change during the check wakes the next wait.
            var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref changed, signal);
            if (condition())
            {
                return;
            }
            if (abandon is { IsCompleted: true })
            {
                throw new InvalidOperationException(describe());
            }
            try
            {
                await Task.WhenAny(signal.Task, abandon ?? signal.Task).WaitAsync(cts.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"{describe()} (waited {timeout.TotalSeconds:0.#} s)");
            }
        }
    }
}
