using System.CommandLine;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Security;
using StreamClone.Shared.Transport;

namespace StreamClone.Host.Commands;

/// <summary>Options several commands share, so they are spelled and documented once.</summary>
internal static class CommonOptions
{
    public static Option<bool> Json() => new("--json") { Description = "Print one machine-readable JSON summary on stdout instead of tables and progress bars." };

    public static Option<LogLevel> LogLevel() => new("--log-level")
    {
        Description = "Minimum log level (logs go to stderr).",
        DefaultValueFactory = _ => Microsoft.Extensions.Logging.LogLevel.Warning,
    };

    /// <summary>The transport's timeouts as options (seconds), bound onto <see cref="TransportOptions"/> by <see cref="TransportTimeouts.Apply"/>.</summary>
    public static TransportTimeouts Timeouts() => new();

    /// <summary>
    /// Mutual TLS or plain TCP: <c>--pki</c>, <c>--node</c>, <c>--insecure</c>, resolved by
    /// <see cref="TransportSecurityOptions.Resolve"/> into the <see cref="TlsSettings"/> the transport takes.
    /// </summary>
    public static TransportSecurityOptions Security() => new();

    public static Option<int> Parallelism() => new("--parallelism")
    {
        Description = "Workers per parallel stage (hash/compress at the source, decompress/verify at the sink).",
        DefaultValueFactory = _ => Environment.ProcessorCount,
    };
}

/// <summary>Timeouts of <see cref="TransportOptions"/> on the command line; their reasons are on the options type.</summary>
internal sealed class TransportTimeouts
{
    public Option<double> Handshake { get; } = Seconds("--handshake-timeout", "Seconds a peer may take to complete its Hello.", TransportOptions.Default.HandshakeTimeout);

    public Option<double> Idle { get; } = Seconds("--idle-timeout", "Seconds without a byte on the bulk lane before the peer counts as gone.", TransportOptions.Default.IdleTimeout);

    public Option<double> WriteStall { get; } = Seconds("--write-stall-timeout", "Seconds a send may make no progress (the peer stopped reading) before the connection is dropped.", TransportOptions.Default.WriteStallTimeout);

    public IEnumerable<Option> All => [Handshake, Idle, WriteStall];

    public TransportOptions Apply(ParseResult result, TransportOptions transport) => transport with
    {
        HandshakeTimeout = TimeSpan.FromSeconds(Positive(result, Handshake)),
        IdleTimeout = TimeSpan.FromSeconds(Positive(result, Idle)),
        WriteStallTimeout = TimeSpan.FromSeconds(Positive(result, WriteStall)),
    };

    internal static Option<double> Seconds(string name, string description, TimeSpan value) =>
        new(name) { Description = description, DefaultValueFactory = _ => value.TotalSeconds };

    internal static double Positive(ParseResult result, Option<double> option)
    {
        var seconds = result.GetValue(option);
        // No timeout is 0 (= never): an unbounded wait is what these options exist to prevent.
        return seconds > 0 && seconds <= int.MaxValue / 1000
            ? seconds
            : throw new FormatException($"{option.Name} must be a number of seconds above 0, not {seconds}");
    }
}

/// <summary>
/// How a node's connections are secured, on the command line. By default every connection is mutual
/// TLS with the default PKI (<see cref="ClusterPki.DefaultDirectory"/>), created on first use so that
/// <c>demo</c>, <c>bench</c> and tests work with no setup; <c>--pki DIR</c> names another (made by
/// <c>pki init</c>); <c>--insecure</c> runs plain TCP.
/// </summary>
internal sealed class TransportSecurityOptions
{
    public Option<string?> Pki { get; } = new("--pki")
    {
        Description = "PKI directory holding the cluster CA and this node's certificate (`pki init --out DIR`, `pki issue`). "
            + "Default: $XDG_CONFIG_HOME/streamclone/pki or ~/.config/streamclone/pki, created on first use.",
    };

    public Option<string?> Node { get; } = new("--node")
    {
        Description = "This node's name: the certificate nodes/NAME.crt it presents, issued on first use where the CA key is (default: the host name).",
    };

    public Option<bool> Insecure { get; } = new("--insecure")
    {
        Description = "Plain TCP: no certificates, peers not authenticated, nothing encrypted (logged as a warning).",
    };

    public IEnumerable<Option> All => [Pki, Node, Insecure];

    /// <summary>
    /// The node's TLS settings, or null for plain TCP (<c>--insecure</c>, which logs a warning saying so).
    /// Opening the PKI here, before any socket, makes a bad <c>--pki</c> one clear line at startup.
    /// </summary>
    public TlsSettings? Resolve(ParseResult result, ILogger logger)
    {
        var directory = result.GetValue(Pki);
        var node = result.GetValue(Node);
        if (result.GetValue(Insecure))
        {
            if (directory is not null || node is not null)
            {
                throw new FormatException("--insecure runs without certificates: drop --pki and --node, or --insecure");
            }
            logger.LogWarning("--insecure: this node runs plain TCP: its peers are not authenticated and its streams are not encrypted");
            return null;
        }
        var credentials = directory is null ? NodeCredentials.OpenOrCreateDefault(node) : NodeCredentials.Open(directory, node);
        logger.LogInformation("mutual TLS as node {Node} (PKI {Directory}, cluster CA sha256 {Fingerprint})",
            credentials.Name, credentials.PkiDirectory, credentials.ClusterFingerprint[..16]);
        return credentials.ToTlsSettings();
    }

    /// <summary>The same choice for a child process this command starts (bench and demo run source and sink as processes).</summary>
    public IReadOnlyList<string> ChildArguments(ParseResult result)
    {
        if (result.GetValue(Insecure))
        {
            return ["--insecure"];
        }
        List<string> arguments = [];
        if (result.GetValue(Pki) is { } directory)
        {
            arguments.AddRange(["--pki", Path.GetFullPath(directory)]);
        }
        if (result.GetValue(Node) is { } node)
        {
            arguments.AddRange(["--node", node]);
        }
        return arguments;
    }
}
