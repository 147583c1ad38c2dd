using System.Buffers;
using System.Diagnostics;
using System.Runtime.InteropServices;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

public sealed partial class DownstreamSession
{
    /// <summary>Bulk frames written per flush at most: the sender drains what the stream already holds, up to this.</summary>
    private const int MaxBatchesPerWrite = 16;

    // Replaced by an empty set when the session ends, so a finished session that something still
    // references (a progress display, a late demand lane) does not pin the child's inventory.
    private ChunkHashSet _inventory = new();
    private long _nextSequence = 1;
    private int _completionSent;
    private readonly TaskCompletionSource<SnapshotStoredMessage> _stored = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The sequence number of the next bulk batch this session sends (for progress, and to hand a child over between paths).</summary>
    public long NextSequence => Interlocked.Read(ref _nextSequence);

    /// <summary>Hashes of the child's inventory kept (at most <see cref="DownstreamOptions.MaxInventoryHashes"/>).</summary>
    public ChunkHashSet Inventory => _inventory;

    /// <summary>
    /// The session's own handshake: waits for the stream (a relay has one only once its upstream offered), sends
    /// the offer and takes the child's inventory, the last two within <see cref="TransportOptions.InventoryTimeout"/>.
    /// The session streams only after this.
    /// </summary>
    internal async Task OpenAsync(FrameConnection bulk)
    {
        Stream = await _server.WaitForStreamAsync(_stop.Token);
        Stats.TotalBytes = Stream.Offer.Objects.Sum(o => o.Size);
        var timeout = bulk.Options.InventoryTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        deadline.CancelAfter(timeout);
        try
        {
            await bulk.SendAsync(FrameType.SnapshotOffer, Stream.Offer, ReadOnlyMemory<byte>.Empty, deadline.Token);
            _inventory = await ReceiveInventoryAsync(bulk, Stream.Offer, deadline.Token);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !_stop.IsCancellationRequested)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.LimitExceeded, $"the inventory was not complete within {timeout.TotalSeconds:0.#} s of the offer");
        }
        Stats.InventoryHashes = _inventory.Count;
        FanoutLog.SessionStarted(_logger, SessionId, Peer.ToString(), _inventory.Count);
    }

    /// <summary>
    /// Runs the bulk lane to the end (after <see cref="OpenAsync"/>): the stream's batches from
    /// <paramref name="firstSequence"/> on (1 = the whole snapshot; later when another path delivered the
    /// ones before), completion, the child's acknowledgement. Frames the child sends meanwhile go to the
    /// server's <see cref="DownstreamServer.ControlFrames"/> handler.
    /// </summary>
    internal async Task RunBulkAsync(FrameConnection bulk, long firstSequence = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(firstSequence, 1);
        var stream = Stream ?? throw new InvalidOperationException("the session was not opened");
        Interlocked.Exchange(ref _nextSequence, firstSequence);
        var ct = _stop.Token;
        var clock = Stopwatch.StartNew();
        Task? send = null, control = null;
        try
        {
            control = ReceiveControlAsync(bulk, ct);
            await JoinMulticastAsync(bulk, ct);
            send = SendBatchesAsync(bulk, stream, ct);
            // Whichever fails first stops the other: a dead or misbehaving child ends sending, a failed stream the session.
            var first = await Task.WhenAny(send, control);
            if (first.IsFaulted || first.IsCanceled)
            {
                await first;
            }
            await send;

            await SendCompletionAsync(bulk, stream, ct);
            var stored = await WaitForStoredAsync(bulk, ct);
            if (stored.SnapshotId != stream.Offer.SnapshotId)
            {
                ThrowHelperFanout.StoredMismatch(stored.SnapshotId, stream.Offer.SnapshotId);
            }
            Stats.Completed = true;
            Stats.CloseReason = CloseReason.Completed($"snapshot {stored.SnapshotId} stored by {Peer}");
            bulk.Abort(Stats.CloseReason);
        }
        catch (Exception ex)
        {
            Stats.CloseReason = await SessionFailure.CloseAsync(bulk, ex, CannotDeliver, Volatile.Read(ref _stopReason),
                reason => FanoutLog.SessionFailed(_logger, SessionId, reason.ToString()));
            throw;
        }
        finally
        {
            Stats.Seconds = clock.Elapsed.TotalSeconds;
            Stats.WireBytes = bulk.BytesSent + (_demandLane?.BytesSent ?? 0);
            Stop(CloseReason.LocalShutdown("session ended"));
            // Both loops have stopped or will at once (stopped above); their faults were observed or do not matter any more.
            await Task.WhenAll(send ?? Task.CompletedTask, control ?? Task.CompletedTask).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _inventory = new();
        }
        FanoutLog.SessionCompleted(_logger, SessionId, Stats.InputBytes, Stats.Seconds, Stats.WireBytes, Stats.DemandRequests);
    }

    /// <summary>
    /// The child's acknowledgement, within <see cref="TransportOptions.IdleTimeout"/> of the completion (the
    /// bulk lane's receive loop runs without its idle timeout while we stream: the child has nothing to say then).
    /// </summary>
    private async Task<SnapshotStoredMessage> WaitForStoredAsync(FrameConnection bulk, CancellationToken ct)
    {
        var timeout = bulk.Options.IdleTimeout;
        try
        {
            return await _stored.Task.WaitAsync(timeout, ct);
        }
        catch (TimeoutException)
        {
            var message = $"{bulk.Name}: no acknowledgement from the peer for {timeout.TotalSeconds:0.#} s after the snapshot's completion";
            bulk.Abort(CloseReason.Timeout(message));
            throw new TimeoutException(message);
        }
    }

    /// <summary>
    /// The bulk lane's receive loop while streaming: SnapshotStored (after our completion) ends it; anything else
    /// goes to the server's control-frame handler, or is a protocol error when there is none.
    /// </summary>
    private async Task ReceiveControlAsync(FrameConnection bulk, CancellationToken ct)
    {
        try
        {
            await bulk.ReceiveAsync(async frame =>
            {
                if (frame.Type == FrameType.SnapshotStored && Volatile.Read(ref _completionSent) != 0)
                {
                    _stored.TrySetResult(frame.DecodeHeader<SnapshotStoredMessage>());
                    return false;
                }
                if (_server.ControlFrames is { } handler)
                {
                    return await handler(this, frame);
                }
                return ThrowHelper.ThrowProtocol<bool>(ProtocolError.UnexpectedFrame, $"{bulk.Name}: unexpected {frame.Type} while streaming");
            }, Timeout.InfiniteTimeSpan, ct);
            _stored.TrySetException(new EndOfStreamException($"{bulk.Name}: the peer stopped sending before it acknowledged the snapshot"));
        }
        catch (Exception ex)
        {
            _stored.TrySetException(ex);
            throw;
        }
    }

    /// <summary>
    /// The sender loop: wait for the next batch of the stream, take whatever else it already holds (up to
    /// <see cref="MaxBatchesPerWrite"/>), filter each for this child, write them all and flush once. The
    /// flush's wait is this child's backpressure, and only its own: the stream does not wait for readers.
    /// </summary>
    private async Task SendBatchesAsync(FrameConnection bulk, EncodedStream stream, CancellationToken ct)
    {
        var objects = stream.Offer.Objects;
        var frames = new List<(ChunkBatchMessage, ReadOnlyMemory<byte>)>(MaxBatchesPerWrite);
        var held = new List<IDisposable>(MaxBatchesPerWrite * 2);
        try
        {
            while (true)
            {
                var (sequence, end) = TcpPosition();
                if (sequence >= end)
                {
                    // Multicast carries the rest for now.
                    if (await WaitWhileMulticastAsync(bulk, stream, ct))
                    {
                        continue;
                    }
                    break;
                }
                if (await stream.ReadAsync(sequence, ct) is not { } next)
                {
                    break;
                }
                do
                {
                    held.Add(next);
                    frames.Add(ForChild(next, objects, held));
                    sequence++;
                }
                while (frames.Count < MaxBatchesPerWrite && sequence < end && sequence <= stream.Count && (next = await stream.ReadAsync(sequence, ct)) is not null);
                await bulk.SendManyAsync(FrameType.ChunkBatch, frames, ct);
                Interlocked.Exchange(ref _nextSequence, sequence);
                frames.Clear();
                DisposeAll(held);
            }
        }
        finally
        {
            DisposeAll(held);
        }
    }

    /// <summary>
    /// The frame this child gets for a stored batch, after its inventory: a batch whose Data chunks it all holds
    /// goes Known-only (no payload); one where it holds some is decompressed and re-compressed without them;
    /// otherwise the stored bytes go as they are. A buffer rented here joins <paramref name="held"/>.
    /// </summary>
    private (ChunkBatchMessage, ReadOnlyMemory<byte>) ForChild(StoredBatch batch, IReadOnlyList<ObjectInfo> objects, List<IDisposable> held)
    {
        var header = batch.Header;
        // Our own log: checked when it was appended (a relay appends what it received before verifying it,
        // so it is checked again here before its numbers place anything).
        var obj = BatchLayout.Validate(header, objects);
        var filtered = BatchFilter.ForInventory(header, batch.Payload.Span, obj, _inventory, _options.CompressionLevel, _options.Buffers, out var payload);
        if (payload is not null)
        {
            held.Add(payload);
        }
        var kinds = MemoryMarshal.Cast<byte, ChunkEntryKind>(filtered.Kinds.AsSpan());
        int zero = 0, known = 0, dedup = 0;
        for (var i = 0; i < kinds.Length; i++)
        {
            switch (kinds[i])
            {
                case ChunkEntryKind.Zero:
                    zero++;
                    break;
                case ChunkEntryKind.Known:
                    known++;
                    // Known in the stream itself: sent earlier in it (dedup); Known only here: the child's inventory.
                    dedup += header.Kinds[i] == (byte)ChunkEntryKind.Known ? 1 : 0;
                    break;
            }
        }
        StreamCloneMetrics.RecordChunkKinds(Role, Lane.Bulk, kinds, dedup);
        var inputBytes = BatchFilter.InputBytes(obj, header.FirstIndex, kinds.Length);
        var body = payload is null ? (ReadOnlyMemory<byte>)batch.Payload.Memory : payload.Memory;
        Stats.AddBatch(inputBytes, kinds.Length, zero, known, body.Length);
        return (filtered, body);
    }

    private static void DisposeAll(List<IDisposable> leases)
    {
        // Removed before disposing, so the finally above never sees a lease twice.
        while (leases.Count > 0)
        {
            var last = leases[^1];
            leases.RemoveAt(leases.Count - 1);
            last.Dispose();
        }
    }

    /// <summary>
    /// Inventory frames until one says Last. The whole inventory may list at most as many hashes as
    /// the offer has chunks (more cannot help the child: each chunk needs at most one hash), each
    /// frame at most <see cref="WireLimits.MaxInventoryHashesPerFrame"/>; beyond either the peer is
    /// cut off. Of those, <see cref="DownstreamOptions.MaxInventoryHashes"/> are kept (a policy bound on
    /// memory; the rest only cost the child bandwidth it would have saved).
    /// </summary>
    private async Task<ChunkHashSet> ReceiveInventoryAsync(FrameConnection bulk, SnapshotOfferMessage offer, CancellationToken ct)
    {
        var offered = offer.Objects.Sum(o => ChunkMath.ChunkCount(o.Size, o.ChunkSize));
        var keep = _options.MaxInventoryHashes;
        var inventory = new ChunkHashSet();
        long listed = 0;
        await bulk.ReceiveAsync(frame =>
        {
            if (frame.Type != FrameType.Inventory)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"expected Inventory, got {frame.Type}");
            }
            var message = frame.DecodeHeader<InventoryMessage>();
            if (message.Count < 0 || frame.Payload.Length != (long)message.Count * ChunkHash.Size)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader,
                    $"inventory frame says {message.Count} hashes but carries {frame.Payload.Length} bytes");
            }
            if (message.Count > WireLimits.MaxInventoryHashesPerFrame)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.LimitExceeded,
                    $"inventory frame of {message.Count} hashes, more than the {WireLimits.MaxInventoryHashesPerFrame} allowed per frame");
            }
            listed += message.Count;
            if (listed > offered)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.LimitExceeded,
                    $"the inventory lists {listed} hashes so far, more than the {offered} chunks of the offer");
            }
            Span<byte> one = stackalloc byte[ChunkHash.Size];
            var payload = frame.Payload;
            for (var i = 0; i < message.Count && inventory.Count < keep; i++)
            {
                payload.Slice(i * ChunkHash.Size, ChunkHash.Size).CopyTo(one);
                inventory.Add(ChunkHash.Read(one));
            }
            if (message.Last)
            {
                WantsMulticast = message.WantsMulticast;
            }
            return ValueTask.FromResult(!message.Last);
        }, ct);
        return inventory;
    }
}

internal static class ThrowHelperFanout
{
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void StoredMismatch(string got, string expected) =>
        throw new ProtocolViolationException(ProtocolError.UnexpectedFrame, $"sink acknowledged snapshot {got}, expected {expected}");
}
