using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using Prometheus;
using StreamClone.Shared.Diagnostics;

namespace StreamClone.Host.Metrics;

/// <summary>
/// Serves the <see cref="StreamCloneMetrics"/> meter in Prometheus text format on
/// http://ADDR:PORT/metrics (prometheus-net's HttpListener server, its registry and serializer).
/// The bridge from System.Diagnostics.Metrics is ours rather than prometheus-net's MeterAdapter
/// because the adapter exports counters as gauges, prefixes every name with the meter's, and drops a
/// series that has not changed for five minutes (a count of failures would vanish); here a counter
/// is a Prometheus counter named after its instrument (<c>streamclone.bytes.sent</c> →
/// <c>streamclone_bytes_sent_total</c>, unit "s" → <c>_seconds</c>), a histogram keeps the
/// instrument's advised buckets, and series live as long as the process (their tags are bounded, see
/// <see cref="PeerLabels"/>). Process metrics (CPU, memory, GC) come along from prometheus-net.
/// </summary>
internal sealed class PrometheusExporter : IDisposable
{
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly IMetricFactory _factory;
    private readonly MeterListener _listener = new();
    private readonly MetricServer _server;
    private readonly string? _finalFile;

    private PrometheusExporter(IPEndPoint endPoint, string? finalFile)
    {
        _finalFile = finalFile;
        _factory = Prometheus.Metrics.WithCustomRegistry(_registry);
        DotNetStats.Register(_registry);
        _server = new MetricServer(HostName(endPoint), endPoint.Port, "metrics/", _registry);
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == StreamCloneMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument, new InstrumentBridge(instrument, _factory));
            }
        };
        // The meter's instruments measure long, int or double; another type needs its callback here.
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _registry.AddBeforeCollectCallback(_listener.RecordObservableInstruments);
    }

    public Uri Url { get; private set; } = null!;

    /// <summary>Listens on <paramref name="endPoint"/> and starts serving; throws <see cref="IOException"/> with one clear line when the address cannot be bound.</summary>
    public static PrometheusExporter Start(IPEndPoint endPoint, string? finalFile = null)
    {
        var exporter = new PrometheusExporter(endPoint, finalFile);
        try
        {
            exporter._server.Start();
        }
        catch (HttpListenerException ex)
        {
            exporter.Dispose();
            throw new IOException($"--metrics {endPoint}: cannot serve metrics there ({ex.Message})", ex);
        }
        exporter._listener.Start();
        var host = endPoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]" : endPoint.Address.ToString();
        exporter.Url = new Uri($"http://{host}:{endPoint.Port}/metrics");
        return exporter;
    }

    // HttpListener matches a request's Host against the prefix: "+" takes every address the socket
    // is bound to, which is what 0.0.0.0 / [::] mean.
    private static string HostName(IPEndPoint endPoint) =>
        endPoint.Address.Equals(IPAddress.Any) || endPoint.Address.Equals(IPAddress.IPv6Any) ? "+"
        : endPoint.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{endPoint.Address}]"
        : endPoint.Address.ToString();

    public void Dispose()
    {
        if (_finalFile is not null)
        {
            WriteFinal(_finalFile);
        }
        _listener.Dispose();
        _server.Dispose();
    }

    /// <summary>The last values, as a scrape would read them; best effort (the command's own outcome is what matters).</summary>
    private void WriteFinal(string path)
    {
        try
        {
            var temp = path + ".tmp";
            var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows())
            {
                // Counters name peers: kept to the owner like the node's other files.
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using (var file = new FileStream(temp, options))
            {
                _registry.CollectAndExportAsTextAsync(file).GetAwaiter().GetResult();
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"streamclone: --metrics-file {path}: {ex.Message}");
        }
    }

    /// <summary>The Prometheus name of an instrument: its name in Prometheus' charset, the unit's suffix, and _total for counters.</summary>
    internal static string PrometheusName(Instrument instrument)
    {
        var name = new StringBuilder(instrument.Name.Length + 8);
        foreach (var c in instrument.Name)
        {
            name.Append(char.IsAsciiLetterOrDigit(c) ? char.ToLowerInvariant(c) : '_');
        }
        if (instrument.Unit == "s" && !name.ToString().EndsWith("_seconds", StringComparison.Ordinal))
        {
            name.Append("_seconds");
        }
        if (KindOf(instrument) == Kind.Counter)
        {
            name.Append("_total");
        }
        return name.ToString();
    }

    private enum Kind
    {
        /// <summary>Counter, ObservableCounter: a Prometheus counter.</summary>
        Counter,
        /// <summary>Histogram: a Prometheus histogram with the instrument's advised buckets.</summary>
        Histogram,
        /// <summary>UpDownCounter (a measurement is a change): a gauge moved by it.</summary>
        Delta,
        /// <summary>Gauge and the observable gauges (a measurement is the value): a gauge set to it.</summary>
        Value,
    }

    private static Kind KindOf(Instrument instrument)
    {
        var type = instrument.GetType();
        var definition = type.IsGenericType ? type.GetGenericTypeDefinition() : type;
        return definition == typeof(Counter<>) || definition == typeof(ObservableCounter<>) ? Kind.Counter
            : definition == typeof(Histogram<>) ? Kind.Histogram
            : definition == typeof(UpDownCounter<>) ? Kind.Delta
            : Kind.Value;
    }

    /// <summary>
    /// One instrument's Prometheus collector, made at its first measurement: its label names are that
    /// measurement's tag keys (the Record* helpers always pass the same keys for an instrument; a
    /// measurement with other keys is dropped rather than failing the caller).
    /// </summary>
    private sealed class InstrumentBridge(Instrument instrument, IMetricFactory factory)
    {
        private readonly object _gate = new();
        private readonly Kind _kind = KindOf(instrument);
        private Bound? _bound;

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var (labelNames, collector) = Volatile.Read(ref _bound) ?? Create(tags);
            if (tags.Length != labelNames.Length)
            {
                return;
            }
            var values = new string[labelNames.Length];
            for (var i = 0; i < labelNames.Length; i++)
            {
                var found = false;
                foreach (var tag in tags)
                {
                    if (tag.Key == labelNames[i])
                    {
                        values[i] = tag.Value?.ToString() ?? "";
                        found = true;
                        break;
                    }
                }
                if (!found)
                {
                    return;
                }
            }
            switch (collector)
            {
                // An observable counter reports its running total, a counter each increment.
                case Counter counter when instrument.IsObservable:
                    counter.WithLabels(values).IncTo(value);
                    break;
                case Counter counter:
                    counter.WithLabels(values).Inc(value);
                    break;
                case Histogram histogram:
                    histogram.WithLabels(values).Observe(value);
                    break;
                case Gauge gauge when _kind == Kind.Delta:
                    gauge.WithLabels(values).Inc(value);
                    break;
                case Gauge gauge:
                    gauge.WithLabels(values).Set(value);
                    break;
            }
        }

        private Bound Create(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var keys = new string[tags.Length];
            for (var i = 0; i < tags.Length; i++)
            {
                keys[i] = tags[i].Key;
            }
            Array.Sort(keys, StringComparer.Ordinal);
            lock (_gate)
            {
                if (_bound is { } made)
                {
                    return made;
                }
                var name = PrometheusName(instrument);
                var help = string.IsNullOrEmpty(instrument.Description) ? instrument.Name : instrument.Description;
                Collector collector = _kind switch
                {
                    Kind.Counter => factory.CreateCounter(name, help, keys, null),
                    Kind.Histogram => factory.CreateHistogram(name, help, keys, new HistogramConfiguration { Buckets = Buckets(instrument) }),
                    _ => factory.CreateGauge(name, help, keys, null),
                };
                var bound = new Bound(keys, collector);
                Volatile.Write(ref _bound, bound);
                return bound;
            }
        }

        private sealed record Bound(string[] LabelNames, Collector Collector);

        // Null (prometheus-net's default buckets) for a histogram without advice.
        private static double[]? Buckets(Instrument instrument) => instrument switch
        {
            Histogram<double> { Advice.HistogramBucketBoundaries: { } b } => [.. b],
            Histogram<long> { Advice.HistogramBucketBoundaries: { } b } => [.. b.Select(v => (double)v)],
            Histogram<int> { Advice.HistogramBucketBoundaries: { } b } => [.. b.Select(v => (double)v)],
            _ => null,
        };
    }
}
