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

    /// <summary>Starts the exporter when the option was given (dispose it when the command ends); a port in use is one line and exit 1.</summary>
    public static PrometheusExporter? Start(ParseResult result, Option<string?> option) =>
        result.GetValue(option) is { } address ? PrometheusExporter.Start(HostServices.ParseEndPoint(address)) : null;
}
