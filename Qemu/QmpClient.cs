using System.Net.Sockets;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace StreamClone.Qemu;

/// <summary>QEMU version from the QMP greeting.</summary>
public sealed record QmpVersion(int Major, int Minor, int Micro, string Package)
{
    public override string ToString() => $"{Major}.{Minor}.{Micro} ({Package})";
}

/// <summary>Limits and timeouts of a <see cref="QmpClient"/>.</summary>
public sealed record QmpClientOptions
{
    /// <summary>QEMU sends its greeting at once on accept; a peer silent this long is not a free QMP
    /// monitor (or another client holds it: QEMU greets the 2nd client only after the 1st leaves).</summary>
    public TimeSpan GreetingTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Default bound on one command when the caller's token never fires, so nothing hangs forever.</summary>
    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest accepted line. query-qmp-schema, the largest 7.2 reply, is ~200 KB.</summary>
    public int MaxLineBytes { get; init; } = 16 << 20;

    /// <summary>Recent events kept for waiters that start after the event arrived (events may precede
    /// the reply of the command that caused them, qmp.md §2).</summary>
    public int EventBufferSize { get; init; } = 1024;
}

/// <summary>
/// Async QMP client over a Unix socket (QEMU 7.2, docs/interop/qmp-spec.txt). One reader loop routes
/// replies to pending commands by id and events into a bounded buffer of recent events that waiters read.
/// Files: this one holds connection, greeting and lifecycle; <c>.Commands</c> sending and replies;
/// <c>.Events</c> the event buffer and waits; <c>.Receive</c> the reader loop.
/// </summary>
public sealed partial class QmpClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly QmpClientOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _shutdown = new();
    private Task _readerTask = Task.CompletedTask;

    private QmpClient(Socket socket, string path, QmpClientOptions options, ILogger logger)
    {
        _socket = socket;
        Path = path;
        _options = options;
        _logger = logger;
        _lineBuffer = new byte[64 * 1024];
        _events = new SequencedBuffer<QmpEvent>(options.EventBufferSize);
    }

    /// <summary>The socket path (named in every error).</summary>
    public string Path { get; }

    /// <summary>From the greeting.</summary>
    public QmpVersion Version { get; private set; } = new(0, 0, 0, "");

    /// <summary>Capabilities QEMU offered in the greeting (7.2: "oob").</summary>
    public IReadOnlyList<string> Capabilities { get; private set; } = [];

    /// <summary>Completes when the connection ends (QEMU quit, socket closed, protocol error or dispose).</summary>
    public Task Completion => _readerTask;

    /// <summary>
    /// Connects, reads the greeting and negotiates capabilities. Throws <see cref="QmpProtocolException"/>
    /// naming <paramref name="path"/> when nothing listens there or the peer is not a QMP monitor.
    /// </summary>
    public static async Task<QmpClient> ConnectAsync(string path, QmpClientOptions? options = null,
        ILogger? logger = null, CancellationToken ct = default)
    {
        options ??= new QmpClientOptions();
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new QmpProtocolException($"cannot connect to QMP socket {path}: {e.Message}", e);
        }

        var client = new QmpClient(socket, path, options, logger ?? NullLogger.Instance);
        try
        {
            await client.ReadGreetingAsync(ct);
            client._readerTask = Task.Run(client.ReceiveLoopAsync, CancellationToken.None);
            await client.ExecuteAsync("qmp_capabilities", null, ct);
            QemuLog.QmpConnected(client._logger, path, client.Version.ToString());
            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    private async Task ReadGreetingAsync(CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.GreetingTimeout);
        ReadOnlyMemory<byte> line;
        try
        {
            line = await ReadLineAsync(timeout.Token)
                ?? throw new QmpProtocolException($"{Path} closed the connection before sending a QMP greeting: not a QEMU monitor?");
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new QmpProtocolException(
                $"no QMP greeting from {Path} within {_options.GreetingTimeout.TotalSeconds:0.#} s: not a QEMU -qmp socket, or another client holds the monitor");
        }

        try
        {
            using var doc = JsonDocument.Parse(line);
            if (doc.RootElement.ValueKind != JsonValueKind.Object ||
                !doc.RootElement.TryGetProperty("QMP", out var qmp) || qmp.ValueKind != JsonValueKind.Object)
                throw new QmpProtocolException($"{Path} is not a QMP monitor: first line is not a greeting: {Quote(line.Span)}");
            if (qmp.TryGetProperty("version", out var version) && version.TryGetProperty("qemu", out var qemu))
            {
                Version = new QmpVersion(qemu.GetProperty("major").GetInt32(), qemu.GetProperty("minor").GetInt32(),
                    qemu.GetProperty("micro").GetInt32(),
                    version.TryGetProperty("package", out var package) ? package.GetString() ?? "" : "");
            }
            if (qmp.TryGetProperty("capabilities", out var caps) && caps.ValueKind == JsonValueKind.Array)
                Capabilities = caps.EnumerateArray().Select(c => c.GetString() ?? "").ToList();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
        {
            throw new QmpProtocolException($"{Path} is not a QMP monitor: bad greeting {Quote(line.Span)}: {e.Message}", e);
        }
    }

    /// <summary>Sends <c>quit</c> and waits (bounded) for QEMU to close the monitor. Never throws.</summary>
    public async Task QuitAsync(TimeSpan timeout)
    {
        try
        {
            using var cts = new CancellationTokenSource(timeout);
            await ExecuteAsync("quit", null, cts.Token);
            await _readerTask.WaitAsync(cts.Token);
        }
        catch (Exception e) when (e is QmpException or IOException or OperationCanceledException or TimeoutException or ObjectDisposedException)
        {
            // QEMU may close the socket before or after answering; either way it is going away.
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_shutdown.IsCancellationRequested)
            return;
        await _shutdown.CancelAsync();
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
            // Not connected any more.
        }
        _socket.Dispose();
        try
        {
            await _readerTask;
        }
        catch (Exception)
        {
            // The loop records its own end; disposal never throws.
        }
        FailAll(new ObjectDisposedException(nameof(QmpClient), $"QMP client for {Path} was disposed"));
        _shutdown.Dispose();
        _sendLock.Dispose();
    }

    internal static string Quote(ReadOnlySpan<byte> bytes)
    {
        var shown = bytes.Length > 120 ? bytes[..120] : bytes;
        var text = new System.Text.StringBuilder("'");
        foreach (var b in shown)
            text.Append(b is >= 0x20 and < 0x7f ? ((char)b).ToString() : $"\\x{b:x2}");
        return text.Append(bytes.Length > 120 ? "'…" : "'").ToString();
    }
}
