using System.IO.Pipelines;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

public sealed partial class FrameConnection
{
    // One writer at a time: FrameWriter numbers frames and PipeWriter is single-producer.
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly FrameWriter _frameWriter = new();
    private long _bytesWritten;

    /// <summary>
    /// Writes one frame and flushes. The flush obeys the pipe's pause threshold: when the socket
    /// cannot keep up, this awaits, and that wait is the backpressure that reaches the producer.
    /// </summary>
    public async ValueTask SendAsync<T>(FrameType type, T header, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct);
        try
        {
            Write(type, header, payload.Span);
            await FlushAsync(type, ct);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private void Write<T>(FrameType type, T header, ReadOnlySpan<byte> payload)
    {
        try
        {
            _bytesWritten += _frameWriter.Write(_connection.Output, type, header, payload);
        }
        catch (InvalidOperationException ex)
        {
            // The transport loop completed the pipe (the peer reset or we aborted): say so, not "writing is not allowed".
            throw Lost($"connection closed while sending {type}", "the peer went away", ex);
        }
    }

    private async ValueTask FlushAsync(FrameType type, CancellationToken ct)
    {
        Metrics.CountSentUpTo(_bytesWritten);
        FlushResult flush;
        try
        {
            var pending = _connection.Output.FlushAsync(ct);
            flush = pending.IsCompleted ? pending.Result : await WaitForProgressAsync(pending.AsTask(), type);
        }
        catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException)
        {
            throw Lost($"connection failed while sending {type}", ex.Message, ex);
        }
        if (flush.IsCanceled || flush.IsCompleted)
        {
            throw Lost($"connection closed while sending {type}", "peer stopped reading", null);
        }
    }

    /// <summary>
    /// A flush that waits is backpressure; one that waits <see cref="TransportOptions.WriteStallTimeout"/>
    /// while the socket sends nothing at all means the peer stopped reading, and fails the connection.
    /// </summary>
    private async Task<FlushResult> WaitForProgressAsync(Task<FlushResult> flush, FrameType type)
    {
        var timeout = Options.WriteStallTimeout;
        var sent = _connection.BytesSent;
        while (true)
        {
            try
            {
                return await flush.WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
                var now = _connection.BytesSent;
                if (now == sent)
                {
                    var message = $"{Name}: the peer stopped reading: nothing sent for {timeout.TotalSeconds:0.#} s while sending {type}";
                    // Wakes the flush (CancelPendingFlush) so no task is left waiting on a dead socket.
                    Abort(CloseReason.Timeout(message));
                    throw new TimeoutException(message);
                }
                sent = now;
            }
        }
    }

    /// <summary>
    /// Waits (bounded) until the socket loop has handed every written byte to the kernel: a flush
    /// only moves bytes into the pipe, and aborting right after it would drop a final Error frame.
    /// </summary>
    /// <summary>How long a normal close waits for frames still in the pipe to reach the socket: a peer that reads takes a few
    /// frames in well under this; one that does not cannot hold a closing connection longer.</summary>
    private static readonly TimeSpan GracefulDrainTimeout = TimeSpan.FromSeconds(1);

    private async Task DrainAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (_connection.BytesDelivered < Interlocked.Read(ref _bytesWritten) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(5);
        }
    }

    /// <summary>
    /// The connection broke under a send: recorded as the close reason (first cause wins) and thrown as an
    /// <see cref="IOException"/> naming the lane, so a session's failure policy sees it was the wire.
    /// </summary>
    private IOException Lost(string what, string fallback, Exception? inner)
    {
        var detail = $"{Name}: {what} ({CloseReason?.Detail ?? fallback})";
        Abort(CloseReason.PeerClosed(detail));
        return new IOException(detail, inner);
    }

    /// <summary>
    /// Writes several frames and flushes once (the Source's batch sender: drain what is ready,
    /// one flush per drain, as Kestrel's receive loop does per read).
    /// </summary>
    public async ValueTask SendManyAsync<T>(FrameType type, IReadOnlyList<(T Header, ReadOnlyMemory<byte> Payload)> frames, CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct);
        try
        {
            foreach (var (header, payload) in frames)
            {
                Write(type, header, payload.Span);
            }
            await FlushAsync(type, ct);
        }
        finally
        {
            _sendLock.Release();
        }
    }
}
