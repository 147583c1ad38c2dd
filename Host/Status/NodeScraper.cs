using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace StreamClone.Host.Status;

/// <summary>One scrape of one node: a reading, or why there is none (down: no answer; error: an answer we refuse).</summary>
internal sealed record NodeScrape(StatusNode Node, long Timestamp, NodeReading? Reading, bool Down, string? Error);

/// <summary>
/// Fetches nodes' /metrics concurrently, each bounded in time and size, so one dead or hostile node
/// never holds up or breaks the others' rows.
/// </summary>
internal sealed class NodeScraper(TimeSpan timeout) : IDisposable
{
    private readonly HttpClient _http = new(new SocketsHttpHandler { ConnectTimeout = timeout, AllowAutoRedirect = false, UseProxy = false })
    {
        Timeout = timeout,
        MaxResponseContentBufferSize = PrometheusText.MaxBodyBytes,
    };

    public Task<NodeScrape[]> ScrapeAllAsync(IReadOnlyList<StatusNode> nodes, CancellationToken ct) =>
        Task.WhenAll(nodes.Select(n => ScrapeAsync(n, ct)));

    public async Task<NodeScrape> ScrapeAsync(StatusNode node, CancellationToken ct)
    {
        string body;
        try
        {
            using var response = await _http.GetAsync(node.Url, HttpCompletionOption.ResponseHeadersRead, ct);
            if (!response.IsSuccessStatusCode)
            {
                return new NodeScrape(node, Stopwatch.GetTimestamp(), null, false, $"HTTP {(int)response.StatusCode}");
            }
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            body = await ReadCappedAsync(stream, ct);
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException or null && ex.HttpRequestError is HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError)
        {
            return new NodeScrape(node, Stopwatch.GetTimestamp(), null, true, ex.InnerException?.Message ?? ex.Message);
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return new NodeScrape(node, Stopwatch.GetTimestamp(), null, true, $"no answer within {timeout.TotalSeconds:0.#} s");
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or InvalidDataException)
        {
            return new NodeScrape(node, Stopwatch.GetTimestamp(), null, false, ex.Message);
        }
        try
        {
            return new NodeScrape(node, Stopwatch.GetTimestamp(), PrometheusText.Parse(body), false, null);
        }
        catch (InvalidDataException ex)
        {
            return new NodeScrape(node, Stopwatch.GetTimestamp(), null, false, ex.Message);
        }
    }

    private static async Task<string> ReadCappedAsync(Stream stream, CancellationToken ct)
    {
        var buffer = new byte[64 << 10];
        using var body = new MemoryStream();
        int read;
        while ((read = await stream.ReadAsync(buffer, ct)) > 0)
        {
            if (body.Length + read > PrometheusText.MaxBodyBytes)
            {
                throw new InvalidDataException($"answer larger than {PrometheusText.MaxBodyBytes >> 20} MiB");
            }
            body.Write(buffer, 0, read);
        }
        return Encoding.UTF8.GetString(body.GetBuffer(), 0, (int)body.Length);
    }

    public void Dispose() => _http.Dispose();
}
