using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using StreamClone.Shared.Diagnostics;

namespace StreamClone.Tests.Unit.Diagnostics;

/// <summary>
/// Records every measurement of the StreamClone meter while it lives (a real <see cref="MeterListener"/>,
/// as an exporter would attach). The meter is process-wide, so tests that use this run in the
/// <see cref="MetricsCollection"/>, which runs alone.
/// </summary>
public sealed class MetricRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<Measurement> _measurements = new();

    public MetricRecorder()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == StreamCloneMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.Start();
    }

    public IReadOnlyList<Measurement> Measurements => [.. _measurements];

    /// <summary>The sum of an instrument's measurements whose tags include every pair in <paramref name="tags"/>.</summary>
    public double Sum(string instrument, params (string Key, string Value)[] tags) =>
        Matching(instrument, tags).Sum(m => m.Value);

    /// <summary>How many measurements an instrument got (for a histogram: how many observations).</summary>
    public int Count(string instrument, params (string Key, string Value)[] tags) =>
        Matching(instrument, tags).Count();

    /// <summary>The distinct values one tag took on an instrument.</summary>
    public IReadOnlySet<string> TagValues(string instrument, string key) =>
        _measurements.Where(m => m.Instrument == instrument && m.Tags.ContainsKey(key)).Select(m => m.Tags[key]).ToHashSet();

    private IEnumerable<Measurement> Matching(string instrument, (string Key, string Value)[] tags) =>
        _measurements.Where(m => m.Instrument == instrument && tags.All(t => m.Tags.TryGetValue(t.Key, out var v) && v == t.Value));

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var copy = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var tag in tags)
        {
            copy[tag.Key] = tag.Value?.ToString() ?? "";
        }
        _measurements.Enqueue(new Measurement(instrument.Name, value, copy));
    }

    public void Dispose() => _listener.Dispose();

    public sealed record Measurement(string Instrument, double Value, IReadOnlyDictionary<string, string> Tags);
}

/// <summary>Tests that read the process-wide meter: run alone, so no other test's transfer adds to their counts.</summary>
[CollectionDefinition(nameof(MetricsCollection), DisableParallelization = true)]
public sealed class MetricsCollection
{
}
