using System.Net.Sockets;
using System.Text.Json;
using System.Text.Unicode;

namespace StreamClone.Qemu;

public sealed partial class QmpClient
{
    // Receive state: bytes [_lineStart, _lineEnd) of _lineBuffer are received and not yet consumed.
    private byte[] _lineBuffer;
    private int _lineStart;
    private int _lineEnd;
    private int _scanFrom;

    /// <summary>
    /// Server → client framing (qmp-spec.txt, qmp.md §1): one JSON object per line, CRLF-terminated.
    /// Returns the next line without its terminator (valid until the next call), or null on EOF.
    /// A line longer than <see cref="QmpClientOptions.MaxLineBytes"/> is a protocol error, checked
    /// before the buffer grows.
    /// </summary>
    private async ValueTask<ReadOnlyMemory<byte>?> ReadLineAsync(CancellationToken ct)
    {
        while (true)
        {
            var newline = Array.IndexOf(_lineBuffer, (byte)'\n', _scanFrom, _lineEnd - _scanFrom);
            if (newline >= 0)
            {
                var end = newline > _lineStart && _lineBuffer[newline - 1] == (byte)'\r' ? newline - 1 : newline;
                var line = new ReadOnlyMemory<byte>(_lineBuffer, _lineStart, end - _lineStart);
                _lineStart = _scanFrom = newline + 1;
                return line;
            }
            _scanFrom = _lineEnd;
            if (_lineStart == _lineEnd)
                _lineStart = _lineEnd = _scanFrom = 0;

            if (_lineEnd == _lineBuffer.Length)
            {
                var pending = _lineEnd - _lineStart;
                if (pending >= _options.MaxLineBytes)
                    throw new QmpProtocolException(
                        $"QMP peer {Path} sent a line over {_options.MaxLineBytes} bytes without a newline: {Quote(_lineBuffer.AsSpan(_lineStart, Math.Min(pending, 120)))}");
                var target = pending * 2 > _lineBuffer.Length ? Math.Min(_lineBuffer.Length * 2, _options.MaxLineBytes + 1) : _lineBuffer.Length;
                var next = target == _lineBuffer.Length ? _lineBuffer : new byte[target];
                Buffer.BlockCopy(_lineBuffer, _lineStart, next, 0, pending);
                _lineBuffer = next;
                _scanFrom -= _lineStart;
                _lineStart = 0;
                _lineEnd = pending;
            }

            var read = await _socket.ReceiveAsync(_lineBuffer.AsMemory(_lineEnd), SocketFlags.None, ct);
            if (read == 0)
                return null;
            _lineEnd += read;
        }
    }

    private async Task ReceiveLoopAsync()
    {
        Exception reason;
        try
        {
            while (true)
            {
                var line = await ReadLineAsync(_shutdown.Token);
                if (line is null)
                {
                    reason = new QmpProtocolException($"QMP peer {Path} closed the connection");
                    break;
                }
                if (line.Value.IsEmpty)
                    continue;
                Dispatch(line.Value);
            }
        }
        catch (OperationCanceledException) when (_shutdown.IsCancellationRequested)
        {
            reason = new ObjectDisposedException(nameof(QmpClient), $"QMP client for {Path} was disposed");
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            reason = _shutdown.IsCancellationRequested
                ? new ObjectDisposedException(nameof(QmpClient), $"QMP client for {Path} was disposed")
                : new QmpProtocolException($"QMP connection {Path} failed: {e.Message}", e);
        }
        catch (QmpProtocolException e)
        {
            reason = e;
        }
        catch (Exception e)
        {
            // Whatever ends the loop must still fail the pending commands, or their callers wait
            // for the command timeout.
            reason = new QmpProtocolException($"QMP reader for {Path} failed: {e.Message}", e);
        }
        QemuLog.QmpReaderStopped(_logger, Path, reason.Message);
        FailAll(reason);
    }

    /// <summary>One complete line: an event, a reply, or a protocol violation that ends the connection.</summary>
    private void Dispatch(ReadOnlyMemory<byte> line)
    {
        // QMP is UTF-8 JSON (qmp-spec.txt). JsonDocument parses strings without decoding them, so a line that is
        // not UTF-8 would parse and fail only later, in whoever reads a string of it (an event's data, an error's
        // class) with an InvalidOperationException: refuse it here, as the connection's protocol error.
        if (!Utf8.IsValid(line.Span))
        {
            throw new QmpProtocolException($"QMP peer {Path} sent a line that is not UTF-8: {Quote(line.Span)}");
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            throw new QmpProtocolException($"QMP peer {Path} sent a line that is not JSON: {Quote(line.Span)}", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new QmpProtocolException($"QMP peer {Path} sent a non-object: {Quote(line.Span)}");
            try
            {
                if (root.TryGetProperty("event", out var name) && name.ValueKind == JsonValueKind.String)
                    OnEvent(root);
                else if (root.TryGetProperty("return", out _) || root.TryGetProperty("error", out _))
                    DispatchReply(root);
                // Anything else (a second greeting, future members) carries nothing for us: ignored.
            }
            catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException or FormatException)
            {
                // A member of the wrong JSON type (e.g. a numeric error class): not QEMU's QMP.
                throw new QmpProtocolException($"QMP peer {Path} sent a malformed message: {Quote(line.Span)}", e);
            }
        }
    }
}
