using Spectre.Console;
using StreamClone.Host.Commands;
using StreamClone.Shared.Fanout;

namespace StreamClone.Host;

/// <summary>Final summary tables.</summary>
internal static class SummaryView
{
    public static void SinkTable(SinkSummary s)
    {
        var table = new Table().Title($"snapshot {s.SnapshotId}").AddColumns("", "value");
        table.AddRow("from", Markup.Escape(s.Source));
        table.AddRow("bytes", $"{s.Bytes:N0}");
        table.AddRow("on the wire", $"{s.WireBytes:N0} ({100.0 * s.WireBytes / Math.Max(1, s.Bytes):F1}%)");
        table.AddRow("time", $"{s.Seconds:F2} s ({s.Mbps:F0} MB/s)");
        table.AddRow("chunks: data / zero / known", $"{s.DataChunks:N0} / {s.ZeroChunks:N0} / {s.KnownChunks:N0}");
        if (s.DemandReads > 0)
        {
            table.AddRow("demand reads", $"{s.DemandReads} (p50 {s.DemandP50Ms:F2} ms, p99 {s.DemandP99Ms:F2} ms, max {s.DemandMaxMs:F2} ms); {s.DemandHits} already present");
        }
        table.AddRow("peak RSS", $"{s.PeakRssMb:F0} MiB");
        foreach (var o in s.Objects)
        {
            table.AddRow($"{o.Kind} {o.Name}", o.Path);
        }
        AnsiConsole.Write(table);
    }

    public static void SourceTable(IReadOnlyList<DownstreamSessionStats> sessions)
    {
        var table = new Table().AddColumns("session", "peer", "result", "bytes", "wire", "seconds", "MB/s", "demand");
        foreach (var s in sessions)
        {
            table.AddRow(s.SessionId[..8], Markup.Escape(s.Peer), s.Completed ? "stored" : $"failed: {Markup.Escape(s.Error ?? "?")}", $"{s.InputBytes:N0}",
                $"{s.WireBytes:N0}", $"{s.Seconds:F2}", $"{s.InputBytes / 1e6 / Math.Max(s.Seconds, 1e-9):F0}", $"{s.DemandRequests}");
        }
        AnsiConsole.Write(table);
    }
}
