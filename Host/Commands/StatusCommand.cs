using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using StreamClone.Host.Status;

namespace StreamClone.Host.Commands;

/// <summary>`status`: every node's progress and rates from its metrics endpoint, one bar per node, live or once.</summary>
internal static class StatusCommand
{
    public static Command Create()
    {
        var nodes = new Option<string[]>("--node") { Description = "A node to read, NAME=URL (http://HOST:PORT/metrics, or HOST:PORT); repeat for each node." };
        var run = new Option<string?>("--topology-run") { Description = "Read the nodes of a perf/topology.sh run (its RUNDIR/nodes.tsv); run it from the run's bridge namespace (perf/topology.sh status RUNID)." };
        var interval = new Option<double>("--interval") { Description = "Seconds between readings (rates are counter deltas over it).", DefaultValueFactory = _ => 1.0 };
        var once = new Option<bool>("--once") { Description = "Read every node twice, one interval apart (for the rates), print once and exit." };
        var json = CommonOptions.Json();
        var command = new Command("status", "Show every node's progress, receive/send rates, cache hit ratio, NACKs and repairs, read from their --metrics endpoints.")
        {
            nodes, run, interval, once, json,
        };
        command.SetAction(async (result, ct) =>
        {
            var seconds = result.GetValue(interval);
            if (!(seconds is >= 0.1 and <= 3600))
            {
                throw new FormatException("--interval: between 0.1 and 3600 seconds");
            }
            List<StatusNode> targets = [.. (result.GetValue(nodes) ?? []).Select(StatusNode.Parse)];
            if (result.GetValue(run) is { } runDir)
            {
                targets.AddRange(StatusNode.FromTopologyRun(runDir));
            }
            if (targets.Count == 0)
            {
                throw new FormatException("status: give --node NAME=URL or --topology-run RUNDIR");
            }
            var period = TimeSpan.FromSeconds(seconds);
            var asJson = result.GetValue(json);
            // Nodes are scraped in parallel, so a dead one costs the others nothing but this wait. It is not tied to the interval:
            // a node's first scrape (its exporter's first export, JIT) took over 0.5 s on a loaded host, which a
            // 0.5 s interval had turned into "down" (StatusCommandTests under a full test run). At least 2 s, at most 5 s.
            using var scraper = new NodeScraper(TimeSpan.FromSeconds(Math.Clamp(seconds, 2, 5)));
            var before = await scraper.ScrapeAllAsync(targets, ct);
            using var timer = new PeriodicTimer(period);
            if (result.GetValue(once))
            {
                await timer.WaitForNextTickAsync(ct);
                Print(Rows(await scraper.ScrapeAllAsync(targets, ct), before), asJson);
                return 0;
            }
            if (!HostServices.Interactive(asJson))
            {
                while (await timer.WaitForNextTickAsync(ct))
                {
                    var now = await scraper.ScrapeAllAsync(targets, ct);
                    Print(Rows(now, before), asJson);
                    before = now;
                }
                return 0;
            }
            await AnsiConsole.Live(StatusView.Table(Rows(before, null))).StartAsync(async live =>
            {
                try
                {
                    while (await timer.WaitForNextTickAsync(ct))
                    {
                        var now = await scraper.ScrapeAllAsync(targets, ct);
                        live.UpdateTarget(StatusView.Table(Rows(now, before)));
                        before = now;
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    // Ctrl+C ends the live view; the last table stays on screen.
                }
            });
            return 0;
        });
        return command;
    }

    private static List<NodeStatus> Rows(NodeScrape[] now, NodeScrape[]? before) =>
        [.. now.Select((n, i) => NodeStatus.From(n, before?[i]))];

    private static void Print(List<NodeStatus> rows, bool asJson)
    {
        if (asJson)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { nodes = rows }, HostServices.Json));
        }
        else
        {
            AnsiConsole.Write(StatusView.Table(rows));
        }
    }
}
