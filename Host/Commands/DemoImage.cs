using System.CommandLine;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Spectre.Console;
using StreamClone.Perf;
using StreamClone.Processes;
using StreamClone.Shared;
using StreamClone.Sink;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Host.Commands;

/// <summary>
/// `demo --image`: a VM-memory-like image (generated once, seeded) streamed from a source
/// process into this process's sink, with demand reads issued while the bulk stream runs, the copy
/// verified byte for byte, and the figures printed.
/// </summary>
internal static class DemoImage
{
    public static async Task<int> RunAsync(string size, int probeReads, string cache, TransportSecurityOptions security, ParseResult r, CancellationToken ct)
    {
        var bytes = SizeParser.Parse(size);
        var image = await EnsureImageAsync(cache, bytes, ct);
        var work = Path.Combine(Path.GetTempPath(), $"streamclone-demo-{Guid.NewGuid():N}");
        Directory.CreateDirectory(work);
        try
        {
            return await RunAsync(image, work, probeReads, security, r, ct);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    public static string DefaultCache() =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "streamclone", "demo");

    private static async Task<string> EnsureImageAsync(string cacheDir, long bytes, CancellationToken ct)
    {
        Directory.CreateDirectory(cacheDir);
        var path = Path.Combine(cacheDir, $"memory-{SizeParser.Format(bytes)}-seed1.img");
        if (File.Exists(path) && new FileInfo(path).Length == bytes)
        {
            AnsiConsole.MarkupLine($"[grey]image:[/] {path} (cached)");
            return path;
        }
        var clock = Stopwatch.StartNew();
        await AnsiConsole.Status().StartAsync($"generating a {SizeParser.Format(bytes)} VM-memory-like image…", async _ =>
            await ImageGenerator.GenerateAsync(path + ".tmp", bytes, ImageProfile.Memory, seed: 1, ct));
        File.Move(path + ".tmp", path, overwrite: true);
        AnsiConsole.MarkupLine($"[grey]image:[/] {path} (generated in {clock.Elapsed.TotalSeconds:F1} s)");
        return path;
    }

    private static async Task<int> RunAsync(string image, string work, int probeReads, TransportSecurityOptions security, ParseResult r, CancellationToken ct)
    {
        using var logging = HostServices.CreateLogging(LogLevel.Warning);
        // The sink here and the source process secure their connection alike; resolved before the source
        // starts, so a first run creates the default PKI once, here.
        var tls = security.Resolve(r, logging.CreateLogger("demo"));
        var portFile = Path.Combine(work, "port");
        await using var source = RunningProcess.Start(ProcessCommand.ThisProgram("source", ["source", "--image", image, "--listen", "127.0.0.1:0", "--port-file", portFile, "--sessions", "1", "--json", .. security.ChildArguments(r)]));
        var port = await PortFile.WaitAsync(portFile, source, TimeSpan.FromSeconds(60), ct);
        AnsiConsole.MarkupLine($"[grey]source:[/] process {source.Id} listening on 127.0.0.1:{port}");

        using var store = ChunkStore.Open(Path.Combine(work, "store"), logging.CreateLogger("sink"));
        await using var session = await UpstreamSession.ConnectAsync(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port), store,
            new UpstreamOptions { Tls = tls }, TransportOptions.Default, logging.CreateLogger("sink"), ct);
        AnsiConsole.MarkupLine($"[grey]sink:[/] process {Environment.ProcessId}, store {Path.Combine(work, "store")}; {probeReads} demand reads will run during the transfer");

        var probe = new DemandProbe();
        var manifest = await probe.RunBesideAsync(session, probeReads, TimeSpan.FromMilliseconds(2), seed: 7, run => ProgressView.ShowSinkAsync(session, run), ct);
        await source.WaitAsync(TimeSpan.FromSeconds(30), ct);

        var copy = session.Snapshot.GetObjectPath(0);
        var identical = await FileCompare.SameContentAsync(image, copy, ct);
        var total = manifest.Objects.Sum(o => o.Size);
        var table = new Table().Title("demo: source → sink over loopback").AddColumns("figure", "value");
        table.AddRow("image", $"{total:N0} bytes");
        table.AddRow("time", $"{session.Seconds:F2} s = {total / 1e6 / session.Seconds:F0} MB/s end to end");
        table.AddRow("on the wire", $"{session.WireBytes:N0} bytes = {100.0 * session.WireBytes / total:F1}% of the image");
        table.AddRow("chunks data / zero / dedup", $"{session.Stats.DataChunks:N0} / {session.Stats.ZeroChunks:N0} / {session.Stats.KnownChunks:N0}");
        table.AddRow("demand reads ahead of the stream", probe.DemandLatenciesMs.Count == 0 ? "none (transfer finished first)" :
            $"{probe.DemandLatenciesMs.Count}: p50 {DemandProbe.Percentile(probe.DemandLatenciesMs, 50):F2} ms, p99 {DemandProbe.Percentile(probe.DemandLatenciesMs, 99):F2} ms");
        table.AddRow("copy identical", identical ? "[green]yes[/]" : "[red]NO[/]");
        AnsiConsole.Write(table);
        return identical ? 0 : 1;
    }
}
