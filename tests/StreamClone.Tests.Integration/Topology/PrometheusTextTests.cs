using System.Net;
using StreamClone.Host.Metrics;
using StreamClone.Host.Status;
using StreamClone.Shared.Diagnostics;
using StreamClone.Tests.Integration.Infrastructure;
using StreamClone.Tests.Unit.Diagnostics;

namespace StreamClone.Tests.Integration.Topology;

/// <summary>What `status` reads from a node's /metrics: the exporter's own text, and hostile text refused with one line.</summary>
[Collection(nameof(MetricsCollection))]
public class PrometheusTextTests
{
    [Fact]
    public async Task The_exporters_text_gives_the_registered_sessions_progress_summed_per_role_and_the_cache_lookups_by_kind()
    {
        using var exporter = PrometheusExporter.Start(new IPEndPoint(IPAddress.Loopback, LoopbackPorts.Free()));
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        var present = 10L;
        using (SnapshotProgress.Register(MetricRole.Sink, () => (present, 100)))
        using (SnapshotProgress.Register(MetricRole.Sink, () => (5, 50)))
        {
            var first = PrometheusText.Parse(await http.GetStringAsync(exporter.Url, TestContext.Current.CancellationToken));
            Assert.Equal((15L, 150L), (first.ChunksPresent, first.ChunksTotal));
            present = 100;
            var second = PrometheusText.Parse(await http.GetStringAsync(exporter.Url, TestContext.Current.CancellationToken));
            Assert.Equal((105L, 150L), (second.ChunksPresent, second.ChunksTotal));
        }
        StreamCloneMetrics.RecordCacheLookups(hits: 3, misses: 1);
        var text = await http.GetStringAsync(exporter.Url, TestContext.Current.CancellationToken);
        Assert.Contains("streamclone_snapshot_chunks{role=\"sink\"}", text, StringComparison.Ordinal);
        var reading = PrometheusText.Parse(text);
        Assert.True(reading.CacheHits >= 3 && reading.CacheMisses >= 1);
    }

    [Fact]
    public void Labels_with_escapes_braces_and_commas_timestamps_and_comments_parse()
    {
        var reading = PrometheusText.Parse("""
            # HELP streamclone_bytes_sent_total Frame bytes {with} "quotes"
            # TYPE streamclone_bytes_sent_total counter
            streamclone_bytes_sent_total{peer="a\"b}c,d",lane="bulk"} 100 1700000000000
            streamclone_bytes_sent_total{lane="demand",peer="x",} 5e2
            streamclone_relay_cache_lookups_total{kind="hit"} 3
            streamclone_relay_cache_lookups_total{kind="miss"} 1
            streamclone_relay_cache_lookups_total{kind="mi\"ss"} 1000
            streamclone_snapshot_chunks_present{role="relay"} 7
            process_cpu_seconds_total 1.5

            """);
        Assert.Equal(600, reading.BytesSent);
        Assert.Equal((3.0, 1.0), (reading.CacheHits, reading.CacheMisses));
        Assert.Equal(7, reading.ChunksPresent);
        Assert.Null(reading.ChunksTotal);
    }

    [Theory]
    [InlineData("", "no metrics in the answer")]
    [InlineData("# only comments\n", "no metrics in the answer")]
    [InlineData("<html><body>hello</body></html>", "not Prometheus text at line 1: \"<html><body>hello</body></html>\"")]
    [InlineData("up 1\nstreamclone_bytes_sent_total{peer=\"x\" 12", "not Prometheus text at line 2")]
    [InlineData("streamclone_bytes_sent_total 12 not-a-timestamp", "not Prometheus text at line 1")]
    [InlineData("9metric 1", "not Prometheus text at line 1")]
    [InlineData("streamclone_multicast_nacks_total NaN", "line 1: a count must be a finite number")]
    [InlineData("streamclone_bytes_received_total -5", "line 1: a count must be a finite number")]
    [InlineData("streamclone_snapshot_chunks 1.5e300", "line 1: a chunk count must be a whole number")]
    [InlineData("streamclone_snapshot_chunks 4000000000000000000\nstreamclone_snapshot_chunks 4000000000000000000\nstreamclone_snapshot_chunks 4000000000000000000", "line 3: chunk counts add up past any snapshot")]
    [InlineData("a 1\n\u0001\u001b[31mred", "not Prometheus text at line 2: \"??[31mred\"")]
    public void Hostile_text_is_one_line_naming_where_it_went_wrong(string text, string expected)
    {
        var failure = Assert.Throws<InvalidDataException>(() => PrometheusText.Parse(text));
        Assert.StartsWith(expected, failure.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', failure.Message);
    }

    [Fact]
    public void A_long_garbage_line_is_quoted_short()
    {
        var failure = Assert.Throws<InvalidDataException>(() => PrometheusText.Parse(new string('{', 100_000)));
        Assert.True(failure.Message.Length < 120, failure.Message);
    }
}
