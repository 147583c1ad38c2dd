using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Store.Upstream;

public sealed partial class UpstreamSession
{
    /// <summary>Readers waiting for a chunk, by (object, index). One request per chunk however many readers wait.</summary>
    private readonly ConcurrentDictionary<(int ObjectId, long Index), TaskCompletionSource> _waiting = new();
    private readonly ConcurrentDictionary<(int ObjectId, long Index), TaskCompletionSource> _refetching = new();
    private FrameConnection? _demand;
    private Task? _demandLoop;
    private long _nextRequestId;
    private Exception? _demandClosed;

    private void AttachDemandLane(FrameConnection demand)
    {
        _demand = demand;
        _demandLoop = Task.Run(ReceiveDemandAnswersAsync);
    }

    /// <summary>
    /// Reads snapshot bytes. Present chunks are read at once; missing ones are requested over the
    /// demand lane, ahead of the bulk stream, and the read completes when they arrive (by either
    /// lane). Reads past the object's end are cut short.
    /// </summary>
    public async ValueTask<int> ReadAsync(int objectId, long offset, Memory<byte> destination, CancellationToken ct = default)
    {
        var objects = Snapshot.Objects;
        if ((uint)objectId >= (uint)objects.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(objectId), objectId, $"the snapshot has {objects.Count} objects");
        }
        var obj = objects[objectId];
        if (offset < 0 || offset > obj.Size)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{obj.Name} has {obj.Size} bytes");
        }
        var length = (int)Math.Min(destination.Length, obj.Size - offset);
        if (length == 0)
        {
            return 0;
        }
        await EnsureChunksAsync(objectId, offset / obj.ChunkSize, (offset + length - 1) / obj.ChunkSize, ct);
        return Snapshot.Read(objectId, offset, destination.Span[..length]);
    }

    /// <summary>
    /// Completes once chunks <paramref name="firstIndex"/> .. +<paramref name="count"/> of an object are present in the
    /// store, requesting the missing ones over the demand lane (a relay answering a child's demand request asks its
    /// own upstream this way). Concurrent waiters for a chunk share one request, as <see cref="ReadAsync"/>'s do.
    /// </summary>
    public Task EnsurePresentAsync(int objectId, long firstIndex, int count, CancellationToken ct = default)
    {
        var objects = Snapshot.Objects;
        if ((uint)objectId >= (uint)objects.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(objectId), objectId, $"the snapshot has {objects.Count} objects");
        }
        var total = ChunkMath.ChunkCount(objects[objectId].Size, objects[objectId].ChunkSize);
        if (firstIndex < 0 || count < 0 || (count > 0 && firstIndex >= total) || count > total - firstIndex)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"chunks {firstIndex}+{count} of an object of {total} chunks");
        }
        return count == 0 ? Task.CompletedTask : EnsureChunksAsync(objectId, firstIndex, firstIndex + count - 1, ct);
    }

    private async Task EnsureChunksAsync(int objectId, long first, long last, CancellationToken ct)
    {
        var obj = Snapshot.Objects[objectId];
        var started = Stopwatch.GetTimestamp();
        var perRequest = WireLimits.MaxDemandChunksFor(obj.ChunkSize);
        List<Task>? waits = null;
        long runStart = -1;
        for (var index = first; index <= last + 1; index++)
        {
            var created = false;
            if (index <= last && !Snapshot.IsPresent(objectId, index))
            {
                var waiter = _waiting.GetOrAdd((objectId, index), _ =>
                {
                    created = true;
                    return new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                });
                // The chunk may have landed between the check and the registration.
                if (Snapshot.IsPresent(objectId, index))
                {
                    OnChunkPresent(objectId, index);
                }
                (waits ??= []).Add(waiter.Task);
            }
            // Coalesce consecutive chunks this call registered into requests the source accepts: at most
            // perRequest chunks each (1024 chunks, 4 MiB), so an 8 MiB read of 4 KiB chunks is two requests
            // and a read across 511 chunks of 4 MiB is 511, each one answer of bounded size.
            if (created)
            {
                if (runStart < 0)
                {
                    runStart = index;
                }
                if (index - runStart + 1 == perRequest)
                {
                    await RequestAsync(objectId, runStart, perRequest, forceData: false, ct);
                    runStart = -1;
                }
            }
            else if (runStart >= 0)
            {
                await RequestAsync(objectId, runStart, (int)(index - runStart), forceData: false, ct);
                runStart = -1;
            }
        }
        if (waits is not null)
        {
            // A waiter registered after the demand lane died and its waiters were failed would wait forever.
            if (Volatile.Read(ref _demandClosed) is { } closed)
            {
                FailPendingReads(closed);
            }
            await Task.WhenAll(waits).WaitAsync(ct);
            StreamCloneMetrics.RecordDemandLatency(Stopwatch.GetElapsedTime(started));
        }
    }

    private async Task RequestAsync(int objectId, long firstIndex, int count, bool forceData, CancellationToken ct)
    {
        var demand = _demand ?? throw new InvalidOperationException("no demand lane: the session is not connected");
        StreamCloneMetrics.RecordDemandRequest(MetricRole.Sink);
        await demand.SendAsync(FrameType.DemandRequest, new DemandRequestMessage
        {
            RequestId = Interlocked.Increment(ref _nextRequestId),
            ObjectId = objectId,
            FirstIndex = firstIndex,
            Count = count,
            ForceData = forceData,
        }, ReadOnlyMemory<byte>.Empty, ct);
    }

    private void OnChunkPresent(int objectId, long index)
    {
        if (_waiting.TryRemove((objectId, index), out var waiter))
        {
            waiter.TrySetResult();
        }
        if (_refetching.TryRemove((objectId, index), out var refetch))
        {
            refetch.TrySetResult();
        }
    }

    private void FailPendingReads(Exception reason)
    {
        foreach (var key in _waiting.Keys)
        {
            if (_waiting.TryRemove(key, out var waiter))
            {
                waiter.TrySetException(reason);
            }
        }
        foreach (var key in _refetching.Keys)
        {
            if (_refetching.TryRemove(key, out var waiter))
            {
                waiter.TrySetException(reason);
            }
        }
    }

    private void RequestRefetch(int objectId, long index)
    {
        var created = false;
        _refetching.GetOrAdd((objectId, index), _ =>
        {
            created = true;
            return new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        });
        if (created)
        {
            // Fire and forget is safe: a send failure ends the demand lane, which fails every waiter.
            _ = RequestAsync(objectId, index, 1, forceData: true, _stop.Token);
        }
    }

    private async Task WaitForRefetchesAsync(CancellationToken ct)
    {
        var pending = _refetching.Values.Select(t => t.Task).ToArray();
        if (pending.Length > 0)
        {
            await Task.WhenAll(pending).WaitAsync(ct);
        }
    }

    /// <summary>Demand answers: verified and stored inline, so the waiting reader wakes as soon as its chunk is placed.</summary>
    private async Task ReceiveDemandAnswersAsync()
    {
        var demand = _demand!;
        try
        {
            await demand.ReceiveAsync(frame =>
            {
                if (frame.Type != FrameType.ChunkBatch)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"demand lane: unexpected {frame.Type}");
                }
                var header = frame.DecodeHeader<ChunkBatchMessage>();
                // Verify takes the payload (disposes it), Store the verified data.
                var payload = _options.Buffers.Rent((int)frame.Payload.Length);
                frame.Payload.CopyTo(payload.Span);
                var verified = BatchVerifier.Verify(new ReceivedBatch { Header = header, Payload = payload }, Snapshot.Objects, _options.Buffers);
                Store(verified, demand: true);
                return ValueTask.FromResult(true);
            }, _stop.Token);
        }
        catch (Exception ex)
        {
            var reason = await SessionFailure.CloseAsync(demand, ex, StoreFault);
            if (reason.Kind == CloseKind.Protocol)
            {
                // The source broke the protocol on this lane: told and logged here (the bulk lane may still finish).
                UpstreamLog.SessionFailed(_logger, SessionId, Sentence($"demand lane: {reason}"));
            }
            var closed = new IOException($"demand lane closed: {reason}", ex);
            Volatile.Write(ref _demandClosed, closed);
            FailPendingReads(closed);
        }
    }
}
