using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace StreamClone.Host.Status;

/// <summary>One bar per node (Spectre.Console): progress, receive/send rates, cache hit ratio, NACKs, repairs. Every peer-given text is escaped.</summary>
internal static class StatusView
{
    private const int BarWidth = 16;

    public static IRenderable Table(IReadOnlyList<NodeStatus> nodes)
    {
        var table = new Table().Border(TableBorder.Simple)
            .AddColumn("node").AddColumn("progress").AddColumn(new TableColumn("done").RightAligned()).AddColumn(new TableColumn("receive/s").RightAligned()).AddColumn(new TableColumn("send/s").RightAligned())
            .AddColumn(new TableColumn("cache hit").RightAligned()).AddColumn(new TableColumn("nacks").RightAligned()).AddColumn(new TableColumn("repairs").RightAligned());
        foreach (var node in nodes)
        {
            var name = Markup.Escape(node.Name);
            if (node.State != NodeStatus.Up)
            {
                var color = node.State == NodeStatus.Down ? "grey" : "red";
                table.AddRow(new Markup(name), new Markup($"[{color}]{node.State}: {Markup.Escape(node.Error ?? "")}[/]"), Text.Empty, Text.Empty, Text.Empty, Text.Empty, Text.Empty, Text.Empty);
                continue;
            }
            table.AddRow(new Markup(name), new Markup(Bar(node)), new Text(node.Progress is { } p ? p.ToString("P0", CultureInfo.InvariantCulture) : "serving"), new Text(Rate(node.ReceiveBytesPerSecond)), new Text(Rate(node.SendBytesPerSecond)),
                new Text(node.CacheHitRatio is { } h ? h.ToString("P0", CultureInfo.InvariantCulture) : "-"),
                new Text(Count(node.Nacks)), new Text(Count(node.Repairs)));
        }
        return table;
    }

    private static string Bar(NodeStatus node)
    {
        if (node.Progress is not { } p)
        {
            return "[grey]" + new string('·', BarWidth) + "[/]";
        }
        var filled = (int)Math.Round(p * BarWidth);
        var color = p >= 1 ? "green" : "blue";
        return $"[{color}]{new string('━', filled)}[/][grey]{new string('─', BarWidth - filled)}[/]";
    }

    private static string Count(double? value) => value is { } v ? v.ToString("0", CultureInfo.InvariantCulture) : "-";

    /// <summary>Bytes per second as MB/s (or "-" before a second reading).</summary>
    private static string Rate(double? bytesPerSecond) =>
        bytesPerSecond is { } r ? (r / 1e6).ToString("0.0", CultureInfo.InvariantCulture) + " MB/s" : "-";
}
