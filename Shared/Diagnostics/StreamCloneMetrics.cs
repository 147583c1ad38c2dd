using System.Diagnostics.Metrics;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Diagnostics;

/// <summary>
/// The process's one <see cref="Meter"/> and every instrument on it, each defined once here; code
/// that measures calls the Record* helpers, so every call site is one line and every tag value
/// comes from a small fixed set (or, for peers, from <see cref="PeerLabels"/>, which is capped).
/// A library never exports: with no listener an instrument costs a flag check. The host's
/// <c>--metrics ADDR:PORT</c> attaches a listener that serves them in Prometheus text format.
/// </summary>
/// <remarks>
/// Adding an instrument (a relay's, say): one field here with its name, unit and description, a
/// Record* helper whose parameters are enums or counts (never free text), and a row in the
/// README's metrics table. The exporter picks up every instrument of this meter by itself.
/// </remarks>
public static class StreamCloneMetrics
{
    public const string MeterName = "StreamClone";

    /// <summary>Upper bounds of the latency histograms, in seconds: 0.1 ms to 10 s in 1-2.5-5 steps.
    /// A demand read served from the local store never gets here; one that crosses the network costs
    /// ~0.5 ms on loopback at best and can reach seconds behind a saturated link (the README's p99
    /// target is 5 ms, so the steps are densest there).</summary>
    public static readonly IReadOnlyList<double> LatencyBuckets =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    public static readonly Meter Meter = new(MeterName, typeof(StreamCloneMetrics).Assembly.GetName().Version?.ToString());

    /// <summary>Frame bytes (prefix, header, payload) written to a peer. Tags: peer, lane.</summary>
    public static readonly Counter<long> BytesSent = Meter.CreateCounter<long>(
        "streamclone.bytes.sent", "By", "Frame bytes written to a peer (prefix, header and payload), by peer and lane.");

    /// <summary>Frame bytes read from a peer, whole frames only. Tags: peer, lane.</summary>
    public static readonly Counter<long> BytesReceived = Meter.CreateCounter<long>(
        "streamclone.bytes.received", "By", "Frame bytes read from a peer (whole frames), by peer and lane.");

    /// <summary>
    /// Chunks by how they travel. Tags: kind (data, zero, known, dedup), role (source, sink), lane. A
    /// source counts its bulk chunks as the dedup stage classifies them (only there is known told from
    /// dedup), so a session cut short has counted the few batches still queued behind its socket.
    /// </summary>
    public static readonly Counter<long> Chunks = Meter.CreateCounter<long>(
        "streamclone.chunks", "{chunk}",
        "Chunks by kind: data (bytes on the wire), zero, known (the sink's inventory had the hash), dedup (sent earlier in this stream; the sink sees these as known); role says which side counted them.");

    /// <summary>Demand requests a source answered or a sink sent. Tag: role.</summary>
    public static readonly Counter<long> DemandRequests = Meter.CreateCounter<long>(
        "streamclone.demand.requests", "{request}", "Demand requests answered (role source) or sent (role sink).");

    /// <summary>How long a sink's read waited for chunks it had to fetch from the source (reads served locally are not recorded).</summary>
    public static readonly Histogram<double> DemandLatency = Meter.CreateHistogram<double>(
        "streamclone.demand.latency", "s", "Time a read waited for chunks fetched on demand from the source (local reads are not recorded).",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });

    /// <summary>Group commits of the store: object files fsynced, journal appended and fsynced.</summary>
    public static readonly Counter<long> StoreFlushes = Meter.CreateCounter<long>(
        "streamclone.store.flushes", "{flush}", "Store group commits (object files fsynced, journal appended and fsynced).");

    /// <summary>Data bytes made durable by those flushes.</summary>
    public static readonly Counter<long> StoreFlushedBytes = Meter.CreateCounter<long>(
        "streamclone.store.flushed.bytes", "By", "Chunk data bytes made durable by store flushes.");

    /// <summary>How long one flush took (its fsyncs dominate).</summary>
    public static readonly Histogram<double> StoreFlushDuration = Meter.CreateHistogram<double>(
        "streamclone.store.flush.duration", "s", "Time one store flush took (fsyncs of the object files and the journal).",
        tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });

    /// <summary>Connections closed, by the kind of their first close reason (<see cref="CloseReasons"/>). Tag: reason.</summary>
    public static readonly Counter<long> ConnectionsClosed = Meter.CreateCounter<long>(
        "streamclone.connections.closed", "{connection}", "Connections closed, by the kind of their first close reason.");

    /// <summary>Multicast NACKs: fragments a receiver asked for again (role sink or relay: sent) or a sender was asked for (role relay: received).</summary>
    public static readonly Counter<long> Nacks = Meter.CreateCounter<long>(
        "streamclone.multicast.nacks", "{fragment}", "Multicast fragments NACKed: sent by a receiver, received by a sender (role says which).");

    /// <summary>Multicast repair datagrams a sender sent (after aggregating NACKs), and repairs a receiver took over TCP instead.</summary>
    public static readonly Counter<long> Repairs = Meter.CreateCounter<long>(
        "streamclone.multicast.repairs", "{datagram}", "Multicast repair datagrams sent after aggregated NACKs.");

    /// <summary>Multicast datagrams sent, by kind (data, repair) — the feeder's egress in datagrams.</summary>
    public static readonly Counter<long> DatagramsSent = Meter.CreateCounter<long>(
        "streamclone.multicast.datagrams.sent", "{datagram}", "Multicast datagrams sent (data and repairs).");

    /// <summary>Datagrams a receiver dropped, by reason (malformed, forged, replayed, foreign, duplicate, window). Tag: reason.</summary>
    public static readonly Counter<long> DatagramsDropped = Meter.CreateCounter<long>(
        "streamclone.multicast.datagrams.dropped", "{datagram}", "Multicast datagrams dropped by a receiver, by reason.");

    /// <summary>A relay's cache lookups for chunks a child asked for on demand: hit (the relay had it) or miss (asked upstream). Tag: kind.</summary>
    public static readonly Counter<long> CacheLookups = Meter.CreateCounter<long>(
        "streamclone.relay.cache.lookups", "{chunk}", "Relay cache lookups for demanded chunks: kind hit (served from the cache) or miss (asked upstream).");

    /// <summary>
    /// Chunks of the snapshots this process is pulling (sessions registered in <see cref="SnapshotProgress"/>),
    /// summed per role; with <see cref="SnapshotChunksPresent"/> it is a transfer's progress. Tag: role.
    /// </summary>
    public static readonly ObservableGauge<long> SnapshotChunks = Meter.CreateObservableGauge(
        "streamclone.snapshot.chunks", () => SnapshotProgress.Observe(present: false), "{chunk}",
        "Chunks of the snapshots being pulled now (sink or relay sessions), by role.");

    /// <summary>How many of <see cref="SnapshotChunks"/> are present in the store (readable). Tag: role.</summary>
    public static readonly ObservableGauge<long> SnapshotChunksPresent = Meter.CreateObservableGauge(
        "streamclone.snapshot.chunks.present", () => SnapshotProgress.Observe(present: true), "{chunk}",
        "Chunks of the snapshots being pulled now that are present in the store, by role.");

    public static void RecordNacks(MetricRole role, long fragments) =>
        Nacks.Add(fragments, new KeyValuePair<string, object?>(MetricTags.Role, MetricTags.Of(role)));

    public static void RecordRepairs(long datagrams) => Repairs.Add(datagrams);

    public static void RecordDatagramsSent(long datagrams, bool repair) =>
        DatagramsSent.Add(datagrams, new KeyValuePair<string, object?>(MetricTags.Kind, repair ? MetricTags.Repair : MetricTags.Data));

    public static void RecordDatagramDropped(DatagramDropReason reason) =>
        DatagramsDropped.Add(1, new KeyValuePair<string, object?>(MetricTags.Reason, MetricTags.Of(reason)));

    public static void RecordCacheLookups(long hits, long misses)
    {
        if (hits > 0)
        {
            CacheLookups.Add(hits, new KeyValuePair<string, object?>(MetricTags.Kind, MetricTags.Hit));
        }
        if (misses > 0)
        {
            CacheLookups.Add(misses, new KeyValuePair<string, object?>(MetricTags.Kind, MetricTags.Miss));
        }
    }

    /// <summary>Counts one batch's chunks by kind; kinds with no chunks are not recorded.</summary>
    public static void RecordChunks(MetricRole role, Lane lane, int data, int zero, int known, int dedup = 0)
    {
        if (!Chunks.Enabled)
        {
            return;
        }
        AddChunks(data, MetricTags.Data, role, lane);
        AddChunks(zero, MetricTags.Zero, role, lane);
        AddChunks(known, MetricTags.Known, role, lane);
        AddChunks(dedup, MetricTags.Dedup, role, lane);
    }

    /// <summary>Counts a batch's chunks from their wire kinds; <paramref name="dedup"/> of its Known entries were dedup within the stream, not the sink's inventory.</summary>
    public static void RecordChunkKinds(MetricRole role, Lane lane, ReadOnlySpan<ChunkEntryKind> kinds, int dedup = 0)
    {
        if (!Chunks.Enabled)
        {
            return;
        }
        int data = 0, zero = 0, known = 0;
        foreach (var kind in kinds)
        {
            switch (kind)
            {
                case ChunkEntryKind.Data:
                    data++;
                    break;
                case ChunkEntryKind.Zero:
                    zero++;
                    break;
                default:
                    known++;
                    break;
            }
        }
        RecordChunks(role, lane, data, zero, known - dedup, dedup);
    }

    private static void AddChunks(int count, string kind, MetricRole role, Lane lane)
    {
        if (count > 0)
        {
            Chunks.Add(count, new(MetricTags.Kind, kind), new(MetricTags.Role, MetricTags.Of(role)), new(MetricTags.Lane, MetricTags.Of(lane)));
        }
    }

    public static void RecordDemandRequest(MetricRole role) =>
        DemandRequests.Add(1, new KeyValuePair<string, object?>(MetricTags.Role, MetricTags.Of(role)));

    public static void RecordDemandLatency(TimeSpan waited) => DemandLatency.Record(waited.TotalSeconds);

    public static void RecordStoreFlush(long dataBytes, TimeSpan took)
    {
        StoreFlushes.Add(1);
        StoreFlushedBytes.Add(dataBytes);
        StoreFlushDuration.Record(took.TotalSeconds);
    }

    /// <summary>Counts a closed connection under the kind of <paramref name="reason"/> (see <see cref="CloseReasons.KindOf"/>).</summary>
    public static void RecordConnectionClosed(CloseReason reason) =>
        ConnectionsClosed.Add(1, new KeyValuePair<string, object?>(MetricTags.Reason, CloseReasons.KindOf(reason)));
}

/// <summary>Which side of a transfer counted a measurement.</summary>
public enum MetricRole
{
    Source,
    Sink,
    Relay,
}

/// <summary>Why a multicast receiver dropped a datagram (a fixed set: tag values).</summary>
public enum DatagramDropReason
{
    /// <summary>Too short, bad magic or version, or fields out of range.</summary>
    Malformed,
    /// <summary>AES-GCM authentication failed: not sent by the key holder, or altered.</summary>
    Forged,
    /// <summary>A datagram counter seen before (replay window).</summary>
    Replayed,
    /// <summary>Another sender, snapshot or key id.</summary>
    Foreign,
    /// <summary>A fragment already held (a repair another receiver asked for).</summary>
    Duplicate,
    /// <summary>Beyond the receiver's reassembly window.</summary>
    Window,
}

/// <summary>Tag keys and the fixed tag values, as cached strings (a measurement allocates nothing).</summary>
public static class MetricTags
{
    public const string Peer = "peer";
    public const string Lane = "lane";
    public const string Kind = "kind";
    public const string Role = "role";
    public const string Reason = "reason";

    public const string Data = "data";
    public const string Zero = "zero";
    public const string Known = "known";
    public const string Dedup = "dedup";
    public const string Repair = "repair";
    public const string Hit = "hit";
    public const string Miss = "miss";

    public static string Of(MetricRole role) => role switch
    {
        MetricRole.Source => "source",
        MetricRole.Sink => "sink",
        MetricRole.Relay => "relay",
        _ => "other",
    };

    public static string Of(DatagramDropReason reason) => reason switch
    {
        DatagramDropReason.Malformed => "malformed",
        DatagramDropReason.Forged => "forged",
        DatagramDropReason.Replayed => "replayed",
        DatagramDropReason.Foreign => "foreign",
        DatagramDropReason.Duplicate => "duplicate",
        DatagramDropReason.Window => "window",
        _ => "other",
    };

    public static string Of(Protocol.Lane lane) => lane switch
    {
        Protocol.Lane.Bulk => "bulk",
        Protocol.Lane.Demand => "demand",
        _ => "other",
    };
}
