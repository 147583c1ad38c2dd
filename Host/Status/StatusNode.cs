namespace StreamClone.Host.Status;

/// <summary>A node `status` reads: its name and its metrics URL.</summary>
internal sealed record StatusNode(string Name, Uri Url)
{
    /// <summary>NAME=URL, URL being http://HOST:PORT/metrics or just HOST:PORT.</summary>
    public static StatusNode Parse(string text)
    {
        var eq = text.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0 || eq == text.Length - 1)
        {
            throw new FormatException($"--node {text}: expected NAME=URL (e.g. s1=10.77.0.2:9100)");
        }
        return new StatusNode(text[..eq], ParseUrl(text[(eq + 1)..], text));
    }

    private static Uri ParseUrl(string url, string given)
    {
        var full = url.Contains("://", StringComparison.Ordinal) ? url : $"http://{url}/metrics";
        return Uri.TryCreate(full, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            ? uri
            : throw new FormatException($"--node {given}: not an http URL");
    }

    /// <summary>
    /// The nodes of a `perf/topology.sh` run: RUNDIR/nodes.tsv, one "NAME ROLE ADDR URL" line per host
    /// (URL "-" when the host serves no metrics: skipped).
    /// </summary>
    public static IReadOnlyList<StatusNode> FromTopologyRun(string runDir)
    {
        var file = Path.Combine(runDir, "nodes.tsv");
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"--topology-run {runDir}: no nodes.tsv there (is it a perf/topology.sh run directory?)");
        }
        var nodes = new List<StatusNode>();
        foreach (var line in File.ReadLines(file))
        {
            var fields = line.Split('\t');
            if (fields.Length != 4)
            {
                throw new InvalidDataException($"{file}: expected NAME ROLE ADDR URL, got {PrometheusText.Quote(line)}");
            }
            if (fields[3] != "-")
            {
                nodes.Add(new StatusNode(fields[0], ParseUrl(fields[3], line)));
            }
        }
        return nodes;
    }
}
