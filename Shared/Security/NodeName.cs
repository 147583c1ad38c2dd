using System.Text;

namespace StreamClone.Shared.Security;

/// <summary>
/// A node's name: its certificate's CN and DNS SAN, the name of its files under <c>nodes/</c>, and how
/// its peers' logs and summaries call it. One rule for all of these: 1 to 63 of <c>a-z 0-9 . -</c>,
/// starting and ending with a letter or digit, no "..". That is a DNS name (lower case, so two names
/// never differ by case only), never a path ("/", "." and ".." are impossible), and fits the 64
/// characters X.520 allows a common name.
/// </summary>
public static class NodeName
{
    public const int MaxLength = 63;

    /// <summary>Null when <paramref name="name"/> is a valid node name, else why not.</summary>
    public static string? Problem(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "a node name must not be empty";
        }
        if (name.Length > MaxLength)
        {
            return $"a node name has at most {MaxLength} characters, not {name.Length}";
        }
        foreach (var c in name)
        {
            if (!IsNameChar(c))
            {
                return $"node name '{Printable(name)}' may hold only a-z, 0-9, '.' and '-'";
            }
        }
        if (!char.IsAsciiLetterOrDigit(name[0]) || !char.IsAsciiLetterOrDigit(name[^1]))
        {
            return $"node name '{name}' must start and end with a letter or digit";
        }
        return name.Contains("..", StringComparison.Ordinal) ? $"node name '{name}' must not contain '..'" : null;
    }

    /// <summary>Returns <paramref name="name"/> when valid; else <see cref="FormatException"/> (one line for the user).</summary>
    public static string Validate(string? name) => Problem(name) is { } problem ? throw new FormatException(problem) : name!;

    /// <summary>
    /// This machine's host name made into a node name: lower case, anything else replaced by '-',
    /// trimmed to the rule; "node" when nothing usable is left.
    /// </summary>
    public static string FromHostName(string hostName)
    {
        var builder = new StringBuilder(Math.Min(hostName.Length, MaxLength));
        foreach (var c in hostName)
        {
            if (builder.Length == MaxLength)
            {
                break;
            }
            var lower = char.ToLowerInvariant(c);
            var next = IsNameChar(lower) ? lower : '-';
            // ".." would be refused; one dot says the same.
            if (!(next == '.' && builder.Length > 0 && builder[^1] == '.'))
            {
                builder.Append(next);
            }
        }
        var name = builder.ToString().Trim('-', '.');
        return Problem(name) is null ? name : "node";
    }

    /// <summary>The default node name: this machine's host name (<see cref="FromHostName"/>).</summary>
    public static string Default() => FromHostName(Environment.MachineName);

    /// <summary>
    /// Text from a peer's certificate (a subject, an issuer) made safe for one log line: printable
    /// ASCII only, at most <paramref name="maxLength"/> characters. A stranger chooses these bytes.
    /// </summary>
    public static string Printable(string text, int maxLength = 80)
    {
        var builder = new StringBuilder(Math.Min(text.Length, maxLength + 1));
        foreach (var c in text)
        {
            if (builder.Length == maxLength)
            {
                builder.Append('…');
                break;
            }
            builder.Append(c is >= ' ' and <= '~' ? c : '?');
        }
        return builder.ToString();
    }

    private static bool IsNameChar(char c) => char.IsAsciiDigit(c) || c is (>= 'a' and <= 'z') or '.' or '-';
}
