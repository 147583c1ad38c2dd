using System.Globalization;
using System.Net;
using System.Net.Sockets;
using StreamClone.Host.Metrics;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Tests.Integration.Infrastructure;
using StreamClone.Tests.Unit.Diagnostics;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>The `--metrics` exporter in process: Prometheus names, types, the advised buckets, and a port in use.</summary>
[Collection(nameof(MetricsCollection))]
public class PrometheusExporterTests
{
    [Fact]
    public async Task A_histogram_is_exported_with_the_advised_buckets_and_a_counter_as_a_counter()
    {
        var port = LoopbackPorts.Free();
        using var exporter = PrometheusExporter.Start(new IPEndPoint(IPAddress.Loopback, port));
        StreamCloneMetrics.RecordDemandLatency(TimeSpan.FromMilliseconds(0.3));
        StreamCloneMetrics.RecordDemandLatency(TimeSpan.FromMilliseconds(4));
        StreamCloneMetrics.RecordDemandLatency(TimeSpan.FromSeconds(20));
        StreamCloneMetrics.RecordConnectionClosed(CloseReason.Protocol(ProtocolError.HashMismatch, "chunk 7 of object 0"));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var text = await http.GetStringAsync(exporter.Url);

        Assert.Contains("# TYPE streamclone_demand_latency_seconds histogram", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE streamclone_connections_closed_total counter", text, StringComparison.Ordinal);
        Assert.Contains("streamclone_connections_closed_total{reason=\"HashMismatch\"} 1", text, StringComparison.Ordinal);
        var buckets = text.Split('\n')
            .Where(l => l.StartsWith("streamclone_demand_latency_seconds_bucket{le=\"", StringComparison.Ordinal))
            .Select(l => (Le: l.Split('"')[1], Count: double.Parse(l[(l.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture)))
            .ToDictionary(b => b.Le == "+Inf" ? double.PositiveInfinity : double.Parse(b.Le, CultureInfo.InvariantCulture), b => b.Count);
        Assert.Equal([.. StreamCloneMetrics.LatencyBuckets, double.PositiveInfinity], buckets.Keys.Order());
        Assert.Equal(0, buckets[0.00025]);
        Assert.Equal(1, buckets[0.0005]);
        Assert.Equal(2, buckets[0.005]);
        Assert.Equal(2, buckets[10]);
        Assert.Equal(3, buckets[double.PositiveInfinity]);
        Assert.Contains("streamclone_demand_latency_seconds_count 3", text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_port_in_use_fails_with_one_line_naming_the_option()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var endPoint = (IPEndPoint)taken.LocalEndpoint;

        var failure = Assert.Throws<IOException>(() => PrometheusExporter.Start(endPoint));

        Assert.StartsWith($"--metrics {endPoint}: cannot serve metrics there", failure.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', failure.Message);
    }

}
