using System.Buffers;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace StreamClone.Qemu;

public sealed partial class QmpClient
{
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly Lock _pendingLock = new();

    /// <summary>Commands sent and not yet answered, by id. Ids grow with send order, so the smallest
    /// id is the oldest: where an id-less error goes (QEMU's parse errors carry no id, qmp.md §2).</summary>
    private readonly SortedDictionary<long, Pending> _pending = [];
    private long _nextId;
    private Exception? _closedBy;

    private sealed record Pending(string Command, TaskCompletionSource<JsonElement> Reply);

    /// <summary>
    /// Runs one command and returns its <c>return</c> value (cloned; <c>{}</c> for commands without data).
    /// <paramref name="arguments"/> is serialised with System.Text.Json: pass a
    /// <see cref="System.Text.Json.Nodes.JsonObject"/> or a dictionary for QMP's hyphenated names.
    /// Throws <see cref="QmpException"/> for a QMP error and <see cref="QmpProtocolException"/> when the
    /// connection ends first.
    /// </summary>
    public Task<JsonElement> ExecuteAsync(string command, object? arguments = null, CancellationToken ct = default) =>
        ExecuteCoreAsync(command, arguments, null, ct);

    /// <summary>Like <see cref="ExecuteAsync"/>, with <paramref name="fd"/> attached to the same sendmsg as
    /// SCM_RIGHTS (how getfd and add-fd receive descriptors, qmp.md §3). QEMU dups it; the caller keeps
    /// and closes its own copy.</summary>
    public Task<JsonElement> ExecuteWithFdAsync(string command, object? arguments, SafeHandle fd, CancellationToken ct = default) =>
        ExecuteCoreAsync(command, arguments, fd, ct);

    /// <summary><c>getfd</c>: hands <paramref name="fd"/> to QEMU under <paramref name="fdName"/>, usable as
    /// <c>fd:NAME</c> by migrate/migrate-incoming (which consume it: getfd again per migration).</summary>
    public Task GetFdAsync(string fdName, SafeHandle fd, CancellationToken ct = default) =>
        ExecuteWithFdAsync("getfd", new Dictionary<string, string> { ["fdname"] = fdName }, fd, ct);

    private async Task<JsonElement> ExecuteCoreAsync(string command, object? arguments, SafeHandle? fd, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(command);
        var pending = new Pending(command, new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously));
        long id = 0;
        var payload = new ArrayBufferWriter<byte>(256);

        await _sendLock.WaitAsync(ct);
        try
        {
            lock (_pendingLock)
            {
                if (_closedBy is not null)
                    throw new QmpProtocolException($"QMP connection {Path} is closed: {_closedBy.Message}", _closedBy);
                id = ++_nextId;
                _pending.Add(id, pending);
            }
            using (var writer = new Utf8JsonWriter(payload))
            {
                writer.WriteStartObject();
                writer.WriteString("execute", command);
                if (arguments is not null)
                {
                    writer.WritePropertyName("arguments");
                    JsonSerializer.Serialize(writer, arguments, arguments.GetType());
                }
                writer.WriteNumber("id", id);
                writer.WriteEndObject();
            }
            // QEMU reads a JSON stream; the newline only keeps a captured session readable.
            payload.Write("\n"u8);
            // Not cancellable once started: half a command would corrupt the stream for every later one.
            try
            {
                var data = payload.WrittenMemory;
                if (fd is not null)
                    data = data[await UnixNative.SendWithFdAsync(_socket, data, fd, _shutdown.Token)..];
                while (!data.IsEmpty)
                    data = data[await _socket.SendAsync(data, System.Net.Sockets.SocketFlags.None, _shutdown.Token)..];
            }
            catch (Exception e) when (e is System.Net.Sockets.SocketException or ObjectDisposedException or OperationCanceledException)
            {
                Remove(id);
                throw new QmpProtocolException($"cannot send {command} to QMP socket {Path}: {e.Message}", e);
            }
        }
        catch (OperationCanceledException)
        {
            Remove(id);
            throw;
        }
        finally
        {
            _sendLock.Release();
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.CommandTimeout);
        try
        {
            return await pending.Reply.Task.WaitAsync(timeout.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            Remove(id);
            throw new TimeoutException($"QMP {command} on {Path}: no reply within {_options.CommandTimeout.TotalSeconds:0.#} s");
        }
        catch (OperationCanceledException)
        {
            Remove(id);
            throw;
        }
    }

    private void Remove(long id)
    {
        lock (_pendingLock)
            _pending.Remove(id);
    }

    /// <summary>Routes a reply: by numeric id, or (id-less error) to the oldest pending command.</summary>
    private void DispatchReply(JsonElement root)
    {
        Pending? pending = null;
        lock (_pendingLock)
        {
            if (root.TryGetProperty("id", out var idElement))
            {
                if (idElement.ValueKind == JsonValueKind.Number && idElement.TryGetInt64(out var id) &&
                    _pending.Remove(id, out var found))
                    pending = found;
            }
            else if (root.TryGetProperty("error", out _) && _pending.Count > 0)
            {
                var oldest = _pending.First();
                _pending.Remove(oldest.Key);
                pending = oldest.Value;
            }
        }
        if (pending is null)
            return; // A reply to a command whose caller gave up (timeout/cancel).

        try
        {
            if (root.TryGetProperty("error", out var error))
            {
                var cls = error.TryGetProperty("class", out var c) ? c.GetString() ?? "" : "";
                var desc = error.TryGetProperty("desc", out var d) ? d.GetString() ?? "" : "";
                pending.Reply.TrySetException(new QmpException(pending.Command, cls, desc));
            }
            else
            {
                pending.Reply.TrySetResult(root.GetProperty("return").Clone());
            }
        }
        catch (Exception e) when (e is InvalidOperationException or KeyNotFoundException)
        {
            // Already out of _pending, so FailAll would not reach it: fail it here, then end the connection.
            var bad = new QmpProtocolException($"QMP peer {Path} sent a malformed reply to {pending.Command}: {root.GetRawText()}", e);
            pending.Reply.TrySetException(bad);
            throw bad;
        }
    }

    /// <summary>Fails every pending command and refuses new ones; the first cause is kept.</summary>
    private void FailAll(Exception cause)
    {
        List<Pending> failed;
        lock (_pendingLock)
        {
            _closedBy ??= cause;
            failed = [.. _pending.Values];
            _pending.Clear();
        }
        foreach (var p in failed)
            p.Reply.TrySetException(_closedBy is QmpProtocolException or ObjectDisposedException
                ? _closedBy
                : new QmpProtocolException($"QMP connection {Path} closed while {p.Command} was pending: {_closedBy.Message}", _closedBy));
        _events.Complete(_closedBy);
    }
}
