using System.CommandLine;
using Microsoft.Extensions.Logging;

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

    public static Option<int> Parallelism() => new("--parallelism")
    {
        Description = "Workers per parallel stage (hash/compress at the source, decompress/verify at the sink).",
        DefaultValueFactory = _ => Environment.ProcessorCount,
    };
}
