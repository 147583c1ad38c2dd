namespace StreamClone.Store.Journal;

/// <summary>
/// Background group commits: a flush starts on the thread pool when the pending data bytes cross
/// <see cref="GroupCommitOptions.FlushBytes"/> (the Append that crossed it returns at once instead of
/// waiting for two fsyncs) or <see cref="GroupCommitOptions.FlushInterval"/> after the first pending
/// record (a slow or idle stream still becomes durable promptly).
/// </summary>
internal sealed partial class GroupCommitJournal
{
    // Armed when the first record enters an empty queue, so an idle journal has no timer traffic.
    private readonly Timer _flushTimer;
    private readonly Lock _scheduleLock = new();
    private Task? _backgroundFlush;
    private bool _stopping;

    private void ArmFlushTimer()
    {
        var interval = _options.FlushInterval;
        if (interval == Timeout.InfiniteTimeSpan)
        {
            return;
        }
        lock (_scheduleLock)
        {
            if (!_stopping)
            {
                _flushTimer.Change(interval, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>
    /// Starts a flush on the thread pool unless one is running. Appends arriving meanwhile queue behind
    /// it (the next group) and the running flush loops while they keep crossing the threshold.
    /// </summary>
    private void ScheduleBackgroundFlush()
    {
        lock (_scheduleLock)
        {
            if (_stopping || _backgroundFlush is { IsCompleted: false })
            {
                return;
            }
            _backgroundFlush = Task.Run(BackgroundFlushAsync);
        }
    }

    private async Task BackgroundFlushAsync()
    {
        try
        {
            // Keep going while appends outpace the flushes: their own trigger was skipped while this ran.
            bool again;
            do
            {
                await FlushCoreAsync(CancellationToken.None);
                lock (_pendingLock)
                {
                    again = _pendingDataBytes >= _options.FlushBytes;
                }
            }
            while (again);
        }
        catch (ObjectDisposedException) when (_closed)
        {
            // Closed under us: dropping the queue is what Dispose means.
        }
        catch (Exception ex)
        {
            // The records went back on the queue; the timer below retries (e.g. once space is freed).
            // An expected IO failure (a full disk) is one line; its stack says nothing the message does not.
            StoreLog.BackgroundFlushFailed(_options.Logger, _options.Owner, ex.Message);
        }
        // A timer tick that fired while this flush ran was skipped; re-arm so leftovers still get flushed.
        bool leftovers;
        lock (_pendingLock)
        {
            leftovers = _pending.Count > 0;
        }
        if (leftovers)
        {
            ArmFlushTimer();
        }
    }

    /// <summary>Stops the timer, waits for a running flush, and lets any later flush fail as closed.</summary>
    private void StopFlushing()
    {
        Task? running;
        lock (_scheduleLock)
        {
            _stopping = true;
            running = _backgroundFlush;
            _flushTimer.Dispose();
        }
        running?.GetAwaiter().GetResult();
        _flushGate.Wait();
        _closed = true;
        _flushGate.Release();
    }
}
