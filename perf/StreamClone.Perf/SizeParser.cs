using System.Globalization;

namespace StreamClone.Perf;

/// <summary>
/// Parses byte sizes such as <c>4096</c>, <c>64K</c>, <c>512M</c>, <c>1G</c>, <c>1.5GiB</c>. Suffixes are
/// binary (K = 1024), as for image and chunk sizes everywhere in StreamClone; case is ignored and
/// an optional trailing <c>B</c> or <c>iB</c> is accepted.
/// </summary>
public static class SizeParser
{
    public static long Parse(string text)
    {
        if (TryParse(text, out var bytes))
        {
            return bytes;
        }
        throw new FormatException($"'{text}' is not a size: expected a number with an optional K, M, G or T suffix (binary), e.g. 64K or 1G");
    }

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var s = text.Trim();
        if (s.EndsWith("iB", StringComparison.OrdinalIgnoreCase))
        {
            s = s[..^2];
        }
        else if (s.EndsWith('B') || s.EndsWith('b'))
        {
            s = s[..^1];
        }
        var shift = s.Length == 0 ? 0 : char.ToUpperInvariant(s[^1]) switch
        {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            'T' => 40,
            _ => 0,
        };
        if (shift != 0)
        {
            s = s[..^1];
        }
        if (!decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number) || number < 0)
        {
            return false;
        }
        var value = number * (1L << shift);
        if (value > long.MaxValue || value != decimal.Truncate(value))
        {
            return false;
        }
        bytes = (long)value;
        return true;
    }

    /// <summary>The shortest exact form: 1073741824 → "1G", 6144 → "6K", 1000 → "1000".</summary>
    public static string Format(long bytes)
    {
        foreach (var (shift, suffix) in new[] { (40, "T"), (30, "G"), (20, "M"), (10, "K") })
        {
            if (bytes != 0 && bytes % (1L << shift) == 0)
            {
                return (bytes >> shift).ToString(CultureInfo.InvariantCulture) + suffix;
            }
        }
        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
