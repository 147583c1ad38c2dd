using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace StreamClone.Tests.Unit.Transport;

/// <summary>A logger whose lines a test awaits (no polling): each formatted line goes into a channel.</summary>
public sealed class LogLines : ILogger
{
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel))
        {
            _lines.Writer.TryWrite(formatter(state, exception));
        }
    }

    /// <summary>The next line that contains <paramref name="text"/> (lines before it are skipped).</summary>
    public async Task<string> NextAsync(string text, CancellationToken ct)
    {
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(ct);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            var line = await _lines.Reader.ReadAsync(guard.Token);
            if (line.Contains(text, StringComparison.Ordinal))
            {
                return line;
            }
        }
    }
}
