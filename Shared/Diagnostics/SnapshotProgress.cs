using System.Diagnostics.Metrics;

namespace StreamClone.Shared.Diagnostics;

/// <summary>
/// The snapshots this process is pulling right now (a sink's or a relay's session), each as a function
/// telling how many of its chunks are present and how many it has: what the observable gauges
/// <see cref="StreamCloneMetrics.SnapshotChunks"/> and <see cref="StreamCloneMetrics.SnapshotChunksPresent"/>
/// report, summed per role, whenever the exporter collects (`./streamclone status` draws its bars
/// from them). Whoever owns a pulling session registers it and disposes the registration when the
/// session ends; the gauges keep nothing of it, so no tag grows with the number of snapshots.
/// </summary>
public static class SnapshotProgress
{
    private static readonly Lock Gate = new();
    private static readonly List<Entry> Entries = [];

    /// <summary>Reports <paramref name="read"/> (present and total chunks, read from any thread) under <paramref name="role"/> until disposed.</summary>
    public static IDisposable Register(MetricRole role, Func<(long Present, long Total)> read)
    {
        ArgumentNullException.ThrowIfNull(read);
        // The gauges are static fields of StreamCloneMetrics: touching one creates them (and publishes them to a listening
        // exporter) even in a process that has measured nothing else yet, so the first scrape after this has them.
        GC.KeepAlive(StreamCloneMetrics.SnapshotChunks);
        var entry = new Entry(role, read);
        lock (Gate)
        {
            Entries.Add(entry);
        }
        return entry;
    }

    /// <summary>One measurement per role with a registered snapshot: the sum of their totals (or of their present chunks).</summary>
    internal static IEnumerable<Measurement<long>> Observe(bool present)
    {
        Entry[] entries;
        lock (Gate)
        {
            entries = [.. Entries];
        }
        var sums = new Dictionary<MetricRole, long>();
        foreach (var entry in entries)
        {
            var (have, total) = entry.Read();
            sums[entry.Role] = sums.GetValueOrDefault(entry.Role) + (present ? have : total);
        }
        return [.. sums.Select(s => new Measurement<long>(s.Value, new KeyValuePair<string, object?>(MetricTags.Role, MetricTags.Of(s.Key))))];
    }

    private sealed class Entry(MetricRole role, Func<(long Present, long Total)> read) : IDisposable
    {
        public MetricRole Role => role;

        public (long Present, long Total) Read() => read();

        public void Dispose()
        {
            lock (Gate)
            {
                Entries.Remove(this);
            }
        }
    }
}
