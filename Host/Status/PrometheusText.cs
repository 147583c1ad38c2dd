using System.Globalization;

namespace StreamClone.Host.Status;

/// <summary>What `status` needs from one node's /metrics: sums over every series of a few instruments.</summary>
internal sealed record NodeReading(
    long? ChunksPresent,
    long? ChunksTotal,
    double BytesReceived,
    double BytesSent,
    double CacheHits,
    double CacheMisses,
    double Nacks,
    double Repairs);

/// <summary>
/// Reads the Prometheus text exposition format (https://prometheus.io/docs/instrumenting/exposition_formats/)
/// as served by a node, keeping only the samples <see cref="NodeReading"/> needs. The text comes from
/// the network, so it is hostile: every sample line must parse (name, optional labels with escapes,
/// a value, an optional timestamp) or the whole reading fails with one line naming the line number;
/// nothing is kept per unknown series, so a huge or odd body costs one pass and no memory.
/// </summary>
internal static class PrometheusText
{
    /// <summary>The largest body read: a node's exporter serves tens of KiB (peers are capped at 64 series each).</summary>
    public const int MaxBodyBytes = 4 << 20;

    private const int MaxQuotedLine = 60;

    public static NodeReading Parse(string text)
    {
        long? present = null, total = null;
        double received = 0, sent = 0, hits = 0, misses = 0, nacks = 0, repairs = 0;
        var samples = 0;
        var lineNumber = 0;
        foreach (var range in text.AsSpan().Split('\n'))
        {
            lineNumber++;
            var line = text.AsSpan()[range].TrimEnd('\r');
            if (line.IsWhiteSpace() || line.TrimStart()[0] == '#')
            {
                continue;
            }
            if (!TryParseSample(line, out var name, out var kind, out var value))
            {
                throw new InvalidDataException($"not Prometheus text at line {lineNumber}: {Quote(line)}");
            }
            samples++;
            switch (name)
            {
                case "streamclone_snapshot_chunks":
                    total = Add(total, Count(value, lineNumber), lineNumber);
                    break;
                case "streamclone_snapshot_chunks_present":
                    present = Add(present, Count(value, lineNumber), lineNumber);
                    break;
                case "streamclone_bytes_received_total":
                    received += Finite(value, lineNumber);
                    break;
                case "streamclone_bytes_sent_total":
                    sent += Finite(value, lineNumber);
                    break;
                case "streamclone_relay_cache_lookups_total" when kind == "hit":
                    hits += Finite(value, lineNumber);
                    break;
                case "streamclone_relay_cache_lookups_total" when kind == "miss":
                    misses += Finite(value, lineNumber);
                    break;
                case "streamclone_multicast_nacks_total":
                    nacks += Finite(value, lineNumber);
                    break;
                case "streamclone_multicast_repairs_total":
                    repairs += Finite(value, lineNumber);
                    break;
            }
        }
        if (samples == 0)
        {
            throw new InvalidDataException("no metrics in the answer");
        }
        return new NodeReading(present, total, received, sent, hits, misses, nacks, repairs);
    }

    /// <summary>
    /// <c>name [{label="value",…}] value [timestamp]</c>. Returns the name as one of the few we read
    /// (else an empty string, so nothing is allocated per unknown series) and the value of a <c>kind</c> label.
    /// </summary>
    private static bool TryParseSample(ReadOnlySpan<char> line, out string name, out string? kind, out double value)
    {
        name = "";
        kind = null;
        value = 0;
        var i = 0;
        while (i < line.Length && (char.IsAsciiLetterOrDigit(line[i]) || line[i] is '_' or ':'))
        {
            i++;
        }
        if (i == 0 || char.IsAsciiDigit(line[0]))
        {
            return false;
        }
        name = Known(line[..i]);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                while (i < line.Length && line[i] is ' ' or ',')
                {
                    i++;
                }
                if (i < line.Length && line[i] == '}')
                {
                    i++;
                    break;
                }
                var keyStart = i;
                while (i < line.Length && (char.IsAsciiLetterOrDigit(line[i]) || line[i] == '_'))
                {
                    i++;
                }
                var key = line[keyStart..i];
                if (key.IsEmpty || i + 1 >= line.Length || line[i] != '=' || line[i + 1] != '"')
                {
                    return false;
                }
                i += 2;
                var valueStart = i;
                var escaped = false;
                while (i < line.Length && line[i] != '"')
                {
                    if (line[i] == '\\')
                    {
                        escaped = true;
                        i++;
                    }
                    i++;
                }
                if (i >= line.Length)
                {
                    return false;
                }
                if (key.SequenceEqual("kind") && !escaped)
                {
                    kind = line[valueStart..i] is "hit" ? "hit" : line[valueStart..i] is "miss" ? "miss" : null;
                }
                i++;
            }
        }
        var rest = line[i..].Trim();
        var space = rest.IndexOf(' ');
        var number = space < 0 ? rest : rest[..space];
        if (space >= 0 && !long.TryParse(rest[(space + 1)..].Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
        {
            return false;
        }
        return number switch
        {
            "+Inf" => Set(double.PositiveInfinity, out value),
            "-Inf" => Set(double.NegativeInfinity, out value),
            "NaN" => Set(double.NaN, out value),
            _ => double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out value),
        };
    }

    private static bool Set(double v, out double value)
    {
        value = v;
        return true;
    }

    private static string Known(ReadOnlySpan<char> name) => name switch
    {
        "streamclone_snapshot_chunks" => "streamclone_snapshot_chunks",
        "streamclone_snapshot_chunks_present" => "streamclone_snapshot_chunks_present",
        "streamclone_bytes_received_total" => "streamclone_bytes_received_total",
        "streamclone_bytes_sent_total" => "streamclone_bytes_sent_total",
        "streamclone_relay_cache_lookups_total" => "streamclone_relay_cache_lookups_total",
        "streamclone_multicast_nacks_total" => "streamclone_multicast_nacks_total",
        "streamclone_multicast_repairs_total" => "streamclone_multicast_repairs_total",
        _ => "",
    };

    private static double Finite(double value, int line) =>
        double.IsFinite(value) && value >= 0 ? value : throw new InvalidDataException($"line {line}: a count must be a finite number ≥ 0, not {value.ToString(CultureInfo.InvariantCulture)}");

    private static long Add(long? sum, long value, int line) =>
        value <= long.MaxValue - (sum ?? 0) ? (sum ?? 0) + value : throw new InvalidDataException($"line {line}: chunk counts add up past any snapshot");

    private static long Count(double value, int line) =>
        double.IsFinite(value) && value is >= 0 and <= long.MaxValue / 2 ? (long)value : throw new InvalidDataException($"line {line}: a chunk count must be a whole number ≥ 0, not {value.ToString(CultureInfo.InvariantCulture)}");

    /// <summary>A line of the peer's text, safe to print: control characters shown as '?', at most 60 characters.</summary>
    public static string Quote(ReadOnlySpan<char> text)
    {
        var shown = text.Length > MaxQuotedLine ? text[..MaxQuotedLine] : text;
        var chars = new char[shown.Length];
        for (var i = 0; i < shown.Length; i++)
        {
            chars[i] = char.IsControl(shown[i]) || char.IsSurrogate(shown[i]) ? '?' : shown[i];
        }
        return $"\"{new string(chars)}\"{(text.Length > MaxQuotedLine ? "…" : "")}";
    }
}
