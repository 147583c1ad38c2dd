using StreamClone.Perf.Faults;

namespace StreamClone.Host.Bench;

/// <summary>The faults `bench chaos` picks from; names are the JSON keys.</summary>
internal enum ChaosFault
{
    KillSource,
    KillSink,
    CorruptBytes,
    DropBytes,
    DuplicateBytes,
    ReorderBytes,
    CutLane,
    DiskFull,
    StopReading,
}

/// <summary>Which of a session's two connections a fault hits (a fresh sink's first session: bulk = proxy connection 1, demand = 2).</summary>
internal enum ChaosLane
{
    Bulk = 1,
    Demand = 2,
}

/// <summary>One run's fault, fully decided before the run starts (from the seeded RNG), so a seed replays a run.</summary>
internal sealed record ChaosPlan(ChaosFault Fault, ChaosLane Lane, ProxyDirection Direction, long Offset, int Length, bool Reset)
{
    public static string Key(ChaosFault fault) => fault switch
    {
        ChaosFault.KillSource => "kill_source",
        ChaosFault.KillSink => "kill_sink",
        ChaosFault.CorruptBytes => "corrupt_bytes",
        ChaosFault.DropBytes => "drop_bytes",
        ChaosFault.DuplicateBytes => "duplicate_bytes",
        ChaosFault.ReorderBytes => "reorder_bytes",
        ChaosFault.CutLane => "cut_lane",
        ChaosFault.DiskFull => "disk_full",
        ChaosFault.StopReading => "stop_reading",
        _ => fault.ToString(),
    };

    public static bool TryParse(string key, out ChaosFault fault)
    {
        foreach (var f in Enum.GetValues<ChaosFault>())
        {
            if (Key(f) == key)
            {
                fault = f;
                return true;
            }
        }
        fault = default;
        return false;
    }

    public string Describe() => Fault switch
    {
        ChaosFault.KillSource or ChaosFault.KillSink => $"{Key(Fault)} (SIGKILL) once {Offset} bulk bytes reached the sink",
        ChaosFault.CutLane => $"cut the {Lane.ToString().ToLowerInvariant()} lane ({(Reset ? "RST" : "FIN")}) once {Offset} bulk bytes reached the sink",
        ChaosFault.DiskFull => $"a neighbour fills the store's disk once {Offset} bulk bytes reached the sink",
        ChaosFault.StopReading => $"{(Direction == ProxyDirection.Downstream ? "sink" : "source")} stops reading the {Lane.ToString().ToLowerInvariant()} lane after {Offset} bytes",
        _ => $"{Key(Fault)}: {Length} bytes at {Offset} of the {Lane.ToString().ToLowerInvariant()} lane {Direction.ToString().ToLowerInvariant()}",
    };

    /// <summary>
    /// Draws a plan for <paramref name="fault"/>: a lane and direction (mostly the bulk stream, where
    /// the bytes are), a moment as a byte offset inside what the reference run moved on that lane, and a
    /// range length.
    /// </summary>
    public static ChaosPlan Draw(ChaosFault fault, Random random, ChaosReference reference)
    {
        var lane = random.NextDouble() < 0.8 ? ChaosLane.Bulk : ChaosLane.Demand;
        var direction = random.NextDouble() < 0.75 ? ProxyDirection.Downstream : ProxyDirection.Upstream;
        if (fault is ChaosFault.KillSource or ChaosFault.KillSink or ChaosFault.CutLane or ChaosFault.DiskFull)
        {
            // The moment is measured on the bulk downstream: it is the transfer's clock.
            direction = ProxyDirection.Downstream;
        }
        var laneBytes = fault is ChaosFault.KillSource or ChaosFault.KillSink or ChaosFault.CutLane or ChaosFault.DiskFull
            ? reference.Bytes(ChaosLane.Bulk, ProxyDirection.Downstream)
            : reference.Bytes(lane, direction);
        if (laneBytes < 2)
        {
            // Nothing moved there in the reference run (e.g. no demand reads): aim at the bulk stream.
            lane = ChaosLane.Bulk;
            direction = ProxyDirection.Downstream;
            laneBytes = reference.Bytes(lane, direction);
        }
        // Up to 95% of the reference bytes, so the moment comes before a fault-free run would end.
        var offset = random.NextInt64(Math.Max(1, (long)(laneBytes * 0.95)));
        // Ranges fit in what is left of the lane, so a duplicate or swap ends before the stream does
        // (a sink's upstream carries a few hundred bytes; its downstream megabytes).
        var room = Math.Max(1, (laneBytes - offset) / (fault == ChaosFault.ReorderBytes ? 2 : 1));
        var length = 1 + random.Next((int)Math.Min(16 << 10, room));
        return new ChaosPlan(fault, lane, direction, offset, length, random.Next(2) == 0);
    }
}

/// <summary>What a fault-free run moved per lane and direction, and what its store held: the scale faults are aimed on.</summary>
internal sealed record ChaosReference(long BulkDown, long BulkUp, long DemandDown, long DemandUp, long StoreBytes, double Seconds)
{
    public long Bytes(ChaosLane lane, ProxyDirection direction) => (lane, direction) switch
    {
        (ChaosLane.Bulk, ProxyDirection.Downstream) => BulkDown,
        (ChaosLane.Bulk, ProxyDirection.Upstream) => BulkUp,
        (ChaosLane.Demand, ProxyDirection.Downstream) => DemandDown,
        _ => DemandUp,
    };
}
