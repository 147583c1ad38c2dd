using System.IO.Pipelines;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

public sealed partial class FrameConnection
{
    private readonly FrameReader _frameReader;

    /// <summary>
    /// The receive loop: hands each whole frame to <paramref name="onFrame"/>, which must finish
    /// with the frame's slices before it returns (they die at AdvanceTo). Returns when
    /// <paramref name="onFrame"/> returns false or the peer closes cleanly at a frame boundary;
    /// throws <see cref="ProtocolViolationException"/> for malformed input and
    /// <see cref="EndOfStreamException"/> when the peer vanishes mid-frame, and
    /// <see cref="TimeoutException"/> when no byte arrives for <see cref="ReceiveIdleTimeout"/>.
    /// </summary>
    public Task ReceiveAsync(Func<Frame, ValueTask<bool>> onFrame, CancellationToken ct) => ReceiveAsync(onFrame, ReceiveIdleTimeout, ct);

    /// <summary>
    /// <see cref="ReceiveAsync(Func{Frame, ValueTask{bool}}, CancellationToken)"/> with an idle timeout of the caller's
    /// (<see cref="Timeout.InfiniteTimeSpan"/>: none; a server's bulk lane while it streams, when the peer has nothing to say).
    /// </summary>
    public async Task ReceiveAsync(Func<Frame, ValueTask<bool>> onFrame, TimeSpan idleTimeout, CancellationToken ct)
    {
        var input = _connection.Input;
        // Armed only while waiting for bytes: time spent in onFrame (our own backpressure) is not the peer's silence.
        using var idle = idleTimeout == Timeout.InfiniteTimeSpan ? null : CancellationTokenSource.CreateLinkedTokenSource(ct);
        while (true)
        {
            ReadResult result;
            try
            {
                result = idle is null ? await input.ReadAsync(ct) : await ReadWithinAsync(idle, idleTimeout, ct);
            }
            catch (Exception ex) when (ex is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
            {
                // The transport loop failed (a reset, a broken TLS record): the wire is gone, whatever the exception's type.
                throw PeerGone($"{Name}: connection lost after frame #{_frameReader.FramesRead}: {ex.Message}", ex);
            }
            var buffer = result.Buffer;
            var keepGoing = true;
            try
            {
                while (keepGoing && _frameReader.TryRead(ref buffer, out var frame))
                {
                    Metrics.CountReceived(frame);
                    if (frame.Type == FrameType.Error)
                    {
                        var error = frame.DecodeHeader<ErrorMessage>();
                        var said = $"{Name}: peer reported {error.Code}: {error.Message}";
                        Abort(CloseReason.PeerError(error.Code, said));
                        throw new ProtocolViolationException(ProtocolError.PeerError, said);
                    }
                    keepGoing = await onFrame(frame);
                }
            }
            finally
            {
                // Stopping early (a handshake step read its one frame) must not mark the rest as
                // examined: the next frame may already be in the buffer, and ReadAsync would then
                // wait for new bytes that never come.
                if (keepGoing)
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                }
                else
                {
                    input.AdvanceTo(buffer.Start);
                }
            }
            if (!keepGoing)
            {
                return;
            }
            if (result.IsCanceled)
            {
                throw new OperationCanceledException($"{Name}: receive cancelled ({CloseReason?.ToString() ?? "aborted"})");
            }
            if (result.IsCompleted)
            {
                if (!buffer.IsEmpty)
                {
                    throw PeerGone(
                        $"{Name}: peer closed the connection mid-frame ({buffer.Length} bytes of an incomplete frame after frame #{_frameReader.FramesRead})", null);
                }
                throw PeerGone($"{Name}: peer closed the connection after frame #{_frameReader.FramesRead}", null);
            }
        }
    }

    private async ValueTask<ReadResult> ReadWithinAsync(CancellationTokenSource idle, TimeSpan timeout, CancellationToken ct)
    {
        idle.CancelAfter(timeout);
        try
        {
            return await _connection.Input.ReadAsync(idle.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            var message = $"{Name}: no bytes from the peer for {timeout.TotalSeconds:0.#} s (after frame #{_frameReader.FramesRead})";
            Abort(CloseReason.Timeout(message));
            throw new TimeoutException(message);
        }
        finally
        {
            idle.CancelAfter(Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// The peer is gone: recorded (first cause wins: our own abort, which completes the pipe too, keeps its
    /// reason) and thrown as <see cref="EndOfStreamException"/>.
    /// </summary>
    private EndOfStreamException PeerGone(string detail, Exception? inner)
    {
        Abort(CloseReason.PeerClosed(detail));
        var recorded = CloseReason!;
        return recorded.Kind == CloseKind.PeerClosed ? new EndOfStreamException(recorded.Detail, inner)
            : new EndOfStreamException($"{detail} ({recorded})", inner);
    }

    /// <summary>Reads exactly one frame of the expected type and decodes its header (handshake steps).</summary>
    public async Task<T> ReceiveOneAsync<T>(FrameType expected, CancellationToken ct)
    {
        T? value = default;
        await ReceiveAsync(frame =>
        {
            if (frame.Type != expected)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"{Name}: expected {expected}, got {frame.Type}");
            }
            value = frame.DecodeHeader<T>();
            return ValueTask.FromResult(false);
        }, ct);
        return value!;
    }
}
