using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace StreamClone.Shared.Threading;

/// <summary>
/// Runs bulk work (hashing, compression, verification of the bulk stream) on dedicated threads
/// with a lower CPU priority (Linux nice +10), so a demand request is never queued behind bulk
/// work for a CPU: on two cores both processes' bulk stages keep every core busy, and at equal
/// priority a demand answer waits for the kernel's time slices to come round (tens of ms at the
/// tail). At nice +10 a normal-priority thread that wakes up preempts them at once, and the bulk
/// stream still gets every cycle the demand path does not use.
/// </summary>
public sealed partial class BackgroundPriorityScheduler : TaskScheduler, IDisposable
{
    /// <summary>Nice value of the bulk threads (0 normal … 19 lowest).</summary>
    public const int Nice = 10;

    private static readonly Lazy<BackgroundPriorityScheduler> s_bulk =
        new(() => new BackgroundPriorityScheduler(Environment.ProcessorCount + 1, "bulk"));

    private readonly BlockingCollection<Task> _queue = [];
    private readonly Thread[] _threads;

    public BackgroundPriorityScheduler(int threads, string name)
    {
        _threads = new Thread[threads];
        for (var i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Run) { IsBackground = true, Name = $"{name} {i}" };
            _threads[i].Start();
        }
    }

    /// <summary>
    /// The process's bulk scheduler: one thread per core plus one, so a serial stage (dedup, store)
    /// always finds a thread beside the parallel ones.
    /// </summary>
    public static BackgroundPriorityScheduler Bulk => s_bulk.Value;

    public override int MaximumConcurrencyLevel => _threads.Length;

    private void Run()
    {
        if (OperatingSystem.IsLinux())
        {
            // PRIO_PROCESS with a thread id sets that thread's nice value (Linux semantics); failure
            // only means normal priority, which is correct, just slower for demand reads.
            _ = SetPriority(0, GetTid(), Nice);
        }
        foreach (var task in _queue.GetConsumingEnumerable())
        {
            TryExecuteTask(task);
        }
    }

    protected override void QueueTask(Task task) => _queue.Add(task);

    // Never inline: an inlined bulk task would run at the caller's (normal) priority.
    protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) => false;

    protected override IEnumerable<Task> GetScheduledTasks() => _queue.ToArray();

    public void Dispose() => _queue.CompleteAdding();

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, int who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTid();
}
