using System.CommandLine;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;

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
