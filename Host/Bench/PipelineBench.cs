using System.Globalization;
using System.Text.Json;
using StreamClone.Perf;
using StreamClone.Processes;

namespace StreamClone.Host.Bench;

/// <summary>Settings of one source → sink run.</summary>
internal sealed record PipelineSettings(int ChunkSize, int BatchChunks, int Level, int Parallelism, int ProbeReads, int NotSentLowat)
{
    /// <summary>--pki/--node/--insecure for both processes (<see cref="Commands.TransportSecurityOptions.ChildArguments"/>).</summary>
    public IReadOnlyList<string> SecurityArguments { get; init; } = [];

    /// <summary>Whether the two processes run mutual TLS (the default) or plain TCP (<c>--insecure</c>).</summary>
    public bool Tls => !SecurityArguments.Contains("--insecure");

    /// <summary>The same transfer over plain TCP: what TLS costs is the difference.</summary>
    public PipelineSettings Plain() => this with { SecurityArguments = ["--insecure"] };
}

/// <summary>What one run measured, from the two processes' own JSON summaries.</summary>
internal sealed record TransferResult(
    long Bytes, long WireBytes, double Seconds, double Mbps, bool Identical,
    double? DemandP50Ms, double? DemandP99Ms, int DemandReads,
    double SourcePeakRssMb, double SinkPeakRssMb, string SnapshotId);

/// <summary>
/// Runs the source and the sink as separate processes over loopback, exactly as a deployment
/// would, and checks the sink's copy byte for byte. Seconds are the sink's: from connect to the
/// snapshot stored durably and acknowledged.
/// </summary>
internal static class PipelineBench
{
    public static async Task<TransferResult> TransferAsync(string input, string store, string workDir, PipelineSettings s, CancellationToken ct)
    {
        Directory.CreateDirectory(workDir);
        var portFile = Path.Combine(workDir, $"port-{Guid.NewGuid():N}");
        var inv = CultureInfo.InvariantCulture;
        await using var source = RunningProcess.Start(ProcessCommand.ThisProgram("source",
        [
            "source", "--image", input, "--listen", "127.0.0.1:0", "--port-file", portFile, "--sessions", "1", "--json",
            "--chunk-size", s.ChunkSize.ToString(inv), "--batch-chunks", s.BatchChunks.ToString(inv), "--level", s.Level.ToString(inv),
            "--parallelism", s.Parallelism.ToString(inv), "--notsent-lowat", s.NotSentLowat.ToString(inv),
            .. s.SecurityArguments,
        ]));
        var port = await PortFile.WaitAsync(portFile, source, TimeSpan.FromSeconds(60), ct);
        File.Delete(portFile);
        await using var sink = RunningProcess.Start(ProcessCommand.ThisProgram("sink",
        [
            "sink", "--connect", $"127.0.0.1:{port}", "--store", store, "--json",
            "--probe-reads", s.ProbeReads.ToString(inv), "--parallelism", s.Parallelism.ToString(inv),
            .. s.SecurityArguments,
        ]));
        var timeout = TimeSpan.FromMinutes(30);
        var sinkExit = await sink.WaitAsync(timeout, ct);
        var sourceExit = await source.WaitAsync(TimeSpan.FromSeconds(60), ct);
        if (sinkExit != 0 || sourceExit != 0)
        {
            throw new InvalidOperationException(
                $"transfer failed (sink exit {sinkExit}, source exit {sourceExit}).\nsink stderr:\n{sink.Stderr}\nsource stderr:\n{source.Stderr}");
        }
        using var sinkJson = JsonDocument.Parse(sink.LastLine);
        using var sourceJson = JsonDocument.Parse(source.LastLine);
        var root = sinkJson.RootElement;
        var copy = root.GetProperty("objects")[0].GetProperty("path").GetString()!;
        var identical = await FileCompare.SameContentAsync(input, copy, ct);
        return new TransferResult(
            Bytes: root.GetProperty("bytes").GetInt64(),
            WireBytes: root.GetProperty("wire_bytes").GetInt64(),
            Seconds: root.GetProperty("seconds").GetDouble(),
            Mbps: root.GetProperty("mbps").GetDouble(),
            Identical: identical,
            DemandP50Ms: NullableDouble(root, "demand_p50_ms"),
            DemandP99Ms: NullableDouble(root, "demand_p99_ms"),
            DemandReads: root.GetProperty("demand_reads").GetInt32(),
            SourcePeakRssMb: sourceJson.RootElement.GetProperty("peak_rss_mb").GetDouble(),
            SinkPeakRssMb: root.GetProperty("peak_rss_mb").GetDouble(),
            SnapshotId: root.GetProperty("snapshot_id").GetString()!);
    }

    private static double? NullableDouble(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;
}
