using ScottPlot;

namespace StreamClone.Host.Bench;

internal static class SweepPlot
{
    /// <summary>Two bar series per setting: throughput (MB/s, left axis) and wire size (% of input, right axis).</summary>
    public static void Write(string path, IReadOnlyList<(string Label, double Mbps, double WirePercent)> rows)
    {
        var plot = new Plot();
        var speed = plot.Add.Bars(rows.Select((r, i) => new Bar { Position = i * 3, Value = r.Mbps, FillColor = Colors.SteelBlue }).ToArray());
        speed.LegendText = "MB/s (left)";
        var ratio = plot.Add.Bars(rows.Select((r, i) => new Bar { Position = (i * 3) + 1, Value = r.WirePercent, FillColor = Colors.Orange }).ToArray());
        ratio.LegendText = "wire % of input (right)";
        ratio.Axes.YAxis = plot.Axes.Right;
        plot.Axes.Bottom.SetTicks([.. rows.Select((_, i) => (i * 3) + 0.5)], [.. rows.Select(r => r.Label)]);
        plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
        // Room for the rotated labels ("16K L-1 P2"), which are otherwise clipped at the bottom edge.
        plot.Axes.Bottom.MinimumSize = 90;
        plot.Axes.Left.Label.Text = "MB/s end to end";
        plot.Axes.Right.Label.Text = "wire bytes, % of input";
        plot.Title("bench pipeline --sweep: chunk size × zstd level × parallelism");
        plot.ShowLegend(Alignment.UpperRight);
        plot.SavePng(path, 1000, 600);
    }
}
