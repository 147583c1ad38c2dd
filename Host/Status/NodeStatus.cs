using System.Diagnostics;

namespace StreamClone.Host.Status;

/// <summary>One node's row: its last reading and the rates since the reading before (JSON field names are snake_case).</summary>
internal sealed record NodeStatus(
    string Name,
    string Url,
    string State,
    string? Error,
    double? Progress,
    long? ChunksPresent,
    long? ChunksTotal,
    double? BytesReceived,
    double? BytesSent,
    double? ReceiveBytesPerSecond,
    double? SendBytesPerSecond,
    double? CacheHits,
    double? CacheMisses,
    double? CacheHitRatio,
    double? Nacks,
    double? Repairs)
{
    public const string Up = "up";
    public const string Down = "down";
    public const string Failed = "error";

    /// <summary>The row for <paramref name="now"/>; rates need an earlier good reading of the same node (a counter that went back, a restart, gives 0).</summary>
    public static NodeStatus From(NodeScrape now, NodeScrape? before)
    {
        var url = now.Node.Url.ToString();
        if (now.Reading is not { } r)
        {
            return new NodeStatus(now.Node.Name, url, now.Down ? Down : Failed, now.Error, null, null, null, null, null, null, null, null, null, null, null, null);
        }
        double? receiveRate = null, sendRate = null;
        if (before?.Reading is { } b && now.Timestamp > before.Timestamp)
        {
            var seconds = Stopwatch.GetElapsedTime(before.Timestamp, now.Timestamp).TotalSeconds;
            receiveRate = Math.Round(Math.Max(0, r.BytesReceived - b.BytesReceived) / seconds, 1);
            sendRate = Math.Round(Math.Max(0, r.BytesSent - b.BytesSent) / seconds, 1);
        }
        double? progress = r.ChunksTotal is > 0 && r.ChunksPresent is { } present ? Math.Round(Math.Min(1.0, (double)present / r.ChunksTotal.Value), 4) : null;
        var lookups = r.CacheHits + r.CacheMisses;
        return new NodeStatus(now.Node.Name, url, Up, null, progress, r.ChunksPresent, r.ChunksTotal, r.BytesReceived, r.BytesSent, receiveRate, sendRate,
            r.CacheHits, r.CacheMisses, lookups > 0 ? Math.Round(r.CacheHits / lookups, 4) : null, r.Nacks, r.Repairs);
    }
}
