using System.CommandLine;
using StreamClone.Host.Metrics;

namespace StreamClone.Host.Commands;

/// <summary>
/// <c>--metrics ADDR:PORT</c>, shared by every long-running command: serve this process's
/// instruments (StreamCloneMetrics) in Prometheus text format on http://ADDR:PORT/metrics while the
/// command runs. Its own file rather than CommonOptions so the option and its start-up live together.
/// </summary>
internal static class MetricsOption
{
    public static Option<string?> Create() => new("--metrics")
    {
        Description = "Serve metrics in Prometheus text format on http://ADDR:PORT/metrics while running (e.g. 127.0.0.1:9464; 0.0.0.0 for every address).",
    };

    /// <summary>
    /// <c>--metrics-file FILE</c> (on the root command, for every command that takes --metrics): when the command ends,
    /// the last values of every metric go to FILE in the same text format. A script reading a node that already exited
    /// (perf/topology.sh: a sink that finished between two scrapes) gets its final counters, not nothing.
    /// </summary>
    public static readonly Option<string?> FinalFile = new("--metrics-file")
    {
        Description = "When the command ends, write the last values of its metrics to this file (Prometheus text; with --metrics).",
        Recursive = true,
    };

    /// <summary>Starts the exporter when the option was given (dispose it when the command ends); a port in use is one line and exit 1.</summary>
    public static PrometheusExporter? Start(ParseResult result, Option<string?> option) =>
        result.GetValue(option) is { } address ? PrometheusExporter.Start(HostServices.ParseEndPoint(address), result.GetValue(FinalFile)) : null;
}
