using System.Runtime.CompilerServices;

namespace StreamClone.Qemu;

/// <summary>
/// The recent items of a stream (QMP events, console lines), numbered from 1 in arrival order and
/// bounded to the last <c>capacity</c>. Readers start after any number they saw (so an item that
/// arrived before the reader started is not lost), drain what is buffered, then wait for more until
/// <see cref="Complete"/>. One writer, any number of readers.
/// </summary>
internal sealed class SequencedBuffer<T>(int capacity)
{
    private readonly Lock _lock = new();
    private readonly Queue<(long Sequence, T Item)> _items = new();
    private long _last;
    private TaskCompletionSource _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _completed;

    /// <summary>Number of the newest item (0 before the first).</summary>
    public long LastSequence
    {
        get
        {
            lock (_lock)
                return _last;
        }
    }

    /// <summary>Why the stream ended, when it ended with an error.</summary>
    public Exception? CompletedBy { get; private set; }

    /// <summary>Appends the item <paramref name="create"/> builds from its sequence number; wakes readers.</summary>
    public T Add(Func<long, T> create)
    {
        TaskCompletionSource wake;
        T item;
        lock (_lock)
        {
            item = create(++_last);
            _items.Enqueue((_last, item));
            while (_items.Count > capacity)
                _items.Dequeue();
            wake = _arrived;
            _arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        wake.TrySetResult();
        return item;
    }

    /// <summary>No more items; readers finish after the buffered ones. The first call wins.</summary>
    public void Complete(Exception? error = null)
    {
        TaskCompletionSource wake;
        lock (_lock)
        {
            if (_completed)
                return;
            _completed = true;
            CompletedBy = error;
            wake = _arrived;
        }
        wake.TrySetResult();
    }

    public List<T> Snapshot()
    {
        lock (_lock)
            return _items.Select(i => i.Item).ToList();
    }

    /// <summary>Items numbered above <paramref name="after"/>: buffered, then live, until completion.</summary>
    public async IAsyncEnumerable<T> ReadAsync(long after, [EnumeratorCancellation] CancellationToken ct)
    {
        var batch = new List<(long Sequence, T Item)>();
        while (true)
        {
            Task arrived;
            bool completed;
            lock (_lock)
            {
                foreach (var i in _items)
                {
                    if (i.Sequence > after)
                        batch.Add(i);
                }
                arrived = _arrived.Task;
                completed = _completed;
            }
            foreach (var i in batch)
            {
                after = i.Sequence;
                yield return i.Item;
            }
            if (batch.Count > 0)
            {
                batch.Clear();
                continue;
            }
            if (completed)
                yield break;
            await arrived.WaitAsync(ct);
        }
    }
}
