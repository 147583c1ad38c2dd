using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Unit.Diagnostics;

[Collection(nameof(MetricsCollection))]
public class StreamCloneMetricsTests
{
    [Fact]
    public void A_batch_is_counted_by_kind_with_dedup_told_from_known()
    {
        using var recorder = new MetricRecorder();
        ChunkEntryKind[] kinds = [ChunkEntryKind.Data, ChunkEntryKind.Zero, ChunkEntryKind.Known, ChunkEntryKind.Known, ChunkEntryKind.Known, ChunkEntryKind.Data, ChunkEntryKind.Zero];

        StreamCloneMetrics.RecordChunkKinds(MetricRole.Source, Lane.Bulk, kinds, dedup: 2);

        const string chunks = "streamclone.chunks";
        Assert.Equal(2, recorder.Sum(chunks, ("kind", "data"), ("role", "source"), ("lane", "bulk")));
        Assert.Equal(2, recorder.Sum(chunks, ("kind", "zero"), ("role", "source"), ("lane", "bulk")));
        Assert.Equal(1, recorder.Sum(chunks, ("kind", "known"), ("role", "source"), ("lane", "bulk")));
        Assert.Equal(2, recorder.Sum(chunks, ("kind", "dedup"), ("role", "source"), ("lane", "bulk")));
        Assert.Equal(kinds.Length, recorder.Sum(chunks));
    }

    [Fact]
    public void Kinds_without_chunks_record_nothing()
    {
        using var recorder = new MetricRecorder();

        StreamCloneMetrics.RecordChunks(MetricRole.Sink, Lane.Demand, data: 3, zero: 0, known: 0);

        var only = Assert.Single(recorder.Measurements);
        Assert.Equal(3, only.Value);
        Assert.Equal(new Dictionary<string, string> { ["kind"] = "data", ["role"] = "sink", ["lane"] = "demand" }, only.Tags);
    }

    [Fact]
    public void Latency_buckets_span_a_tenth_of_a_millisecond_to_ten_seconds_in_increasing_order()
    {
        var buckets = StreamCloneMetrics.DemandLatency.Advice!.HistogramBucketBoundaries!;

        Assert.Equal(0.0001, buckets[0]);
        Assert.Equal(10, buckets[^1]);
        Assert.True(buckets.Zip(buckets.Skip(1)).All(p => p.First < p.Second));
        Assert.Equal(buckets, StreamCloneMetrics.StoreFlushDuration.Advice!.HistogramBucketBoundaries);
    }

    [Fact]
    public void A_flush_records_its_count_bytes_and_duration_in_seconds()
    {
        using var recorder = new MetricRecorder();

        StreamCloneMetrics.RecordStoreFlush(dataBytes: 1 << 20, took: TimeSpan.FromMilliseconds(5));

        Assert.Equal(1, recorder.Sum("streamclone.store.flushes"));
        Assert.Equal(1 << 20, recorder.Sum("streamclone.store.flushed.bytes"));
        Assert.Equal(0.005, recorder.Sum("streamclone.store.flush.duration"), precision: 6);
    }

    [Fact]
    public void Every_instrument_is_on_the_one_meter_and_named_streamclone_dot_something()
    {
        var instruments = typeof(StreamCloneMetrics).GetFields()
            .Select(f => f.GetValue(null))
            .OfType<System.Diagnostics.Metrics.Instrument>()
            .ToList();

        Assert.True(instruments.Count >= 8);
        Assert.All(instruments, i => Assert.Same(StreamCloneMetrics.Meter, i.Meter));
        Assert.All(instruments, i => Assert.StartsWith("streamclone.", i.Name, StringComparison.Ordinal));
        Assert.Equal(instruments.Count, instruments.Select(i => i.Name).Distinct().Count());
    }
}
