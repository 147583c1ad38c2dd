using System.Runtime.CompilerServices;
using System.Text.Json;

namespace StreamClone.Qemu;

/// <summary>One QMP event.</summary>
/// <param name="Sequence">Numbers events from 1 in arrival order on this client.</param>
/// <param name="Name">The <c>event</c> member, e.g. MIGRATION.</param>
/// <param name="Timestamp">QEMU's timestamp of the event.</param>
/// <param name="Data">The <c>data</c> member, or an undefined element when absent (STOP, RESUME).</param>
public sealed record QmpEvent(long Sequence, string Name, JsonElement Data, DateTimeOffset Timestamp)
{
    /// <summary>A string member of <see cref="Data"/>, or null.</summary>
    public string? GetString(string property) =>
        Data.ValueKind == JsonValueKind.Object && Data.TryGetProperty(property, out var v) && v.ValueKind == JsonValueKind.String
            ? v.GetString()
            : null;

    public override string ToString() =>
        Data.ValueKind == JsonValueKind.Undefined ? $"#{Sequence} {Name}" : $"#{Sequence} {Name} {Data.GetRawText()}";
}

public sealed partial class QmpClient
{
    private readonly SequencedBuffer<QmpEvent> _events;

    /// <summary>
    /// Sequence of the last event received. Capture it before sending a command, then wait with
    /// <c>afterSequence</c> = that value: events caused by the command count even when they arrive
    /// before its reply, and older ones (a previous migration's "completed") do not.
    /// </summary>
    public long LastEventSequence => _events.LastSequence;

    /// <summary>
    /// Events with a sequence above <paramref name="afterSequence"/>: first those still buffered
    /// (the last <see cref="QmpClientOptions.EventBufferSize"/>), then live ones, until the connection
    /// ends (then throws <see cref="QmpProtocolException"/>) or <paramref name="ct"/> fires.
    /// </summary>
    public async IAsyncEnumerable<QmpEvent> ReadEventsAsync(long afterSequence = 0,
        [EnumeratorCancellation] CancellationToken ct = default)
    {
        await foreach (var e in _events.ReadAsync(afterSequence, ct))
            yield return e;
        var closed = _events.CompletedBy ?? new ObjectDisposedException(nameof(QmpClient));
        throw new QmpProtocolException($"QMP connection {Path} closed: {closed.Message}", closed);
    }

    /// <summary>
    /// The first event named <paramref name="name"/> after <paramref name="afterSequence"/> that matches
    /// <paramref name="predicate"/>. Throws <see cref="TimeoutException"/> after <paramref name="timeout"/>
    /// and <see cref="QmpProtocolException"/> if the connection ends first.
    /// </summary>
    public async Task<QmpEvent> WaitForEventAsync(string name, long afterSequence, Func<QmpEvent, bool>? predicate,
        TimeSpan timeout, CancellationToken ct = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            await foreach (var e in ReadEventsAsync(afterSequence, cts.Token))
            {
                if (e.Name == name && (predicate is null || predicate(e)))
                    return e;
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // Fall through to the timeout below.
        }
        throw new TimeoutException($"no QMP event {name} from {Path} within {timeout.TotalSeconds:0.#} s");
    }

    private void OnEvent(JsonElement root)
    {
        var name = root.GetProperty("event").GetString() ?? "";
        var data = root.TryGetProperty("data", out var d) ? d.Clone() : default;
        var timestamp = DateTimeOffset.UtcNow;
        if (root.TryGetProperty("timestamp", out var ts) &&
            ts.TryGetProperty("seconds", out var s) && ts.TryGetProperty("microseconds", out var us) &&
            s.TryGetInt64(out var seconds) && us.TryGetInt64(out var micros) && seconds >= 0)
            timestamp = DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(micros * 10);

        var evt = _events.Add(sequence => new QmpEvent(sequence, name, data, timestamp));
        QemuLog.QmpEvent(_logger, name, evt.Sequence);
    }
}
