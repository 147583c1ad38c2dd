using Microsoft.Extensions.Logging;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>Keeps every log line (level, event id, message, exception) so a test can count what a component said about one event.</summary>
public sealed class CapturingLogger : ILogger
{
    private readonly List<LogLine> _lines = [];

    public IReadOnlyList<LogLine> Lines
    {
        get
        {
            lock (_lines)
            {
                return [.. _lines];
            }
        }
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines)
        {
            _lines.Add(new LogLine(logLevel, eventId.Id, formatter(state, exception), exception));
        }
    }

    public sealed record LogLine(LogLevel Level, int EventId, string Message, Exception? Exception);
}
