using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// Which path carries this child's bulk batches: the TCP lane alone, or multicast from a sequence on (the TCP lane
/// then carries only what came before it, control and completion), and back to TCP when multicast gives up on the
/// child (it lags, or it left).
/// </summary>
public sealed partial class DownstreamSession
{
    private readonly Lock _route = new();
    // Exclusive end of what the TCP lane sends while multicast carries the rest; long.MaxValue: TCP carries everything.
    private long _tcpEnd = long.MaxValue;
    // Where the TCP lane resumes after multicast ended for this child (0: no resume pending).
    private long _resumeAt;
    private TaskCompletionSource _routeChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private FrameConnection? _bulkLane;

    /// <summary>The child asked (on its last inventory frame) to take the bulk stream by multicast.</summary>
    public bool WantsMulticast { get; private set; }

    /// <summary>True while multicast carries this child's batches from some sequence on.</summary>
    public bool IsMulticast
    {
        get { lock (_route) { return _tcpEnd != long.MaxValue; } }
    }

    /// <summary>
    /// Multicast ends for this child: its TCP lane sends again, from <paramref name="resumeFrom"/> (or from where it
    /// stood, if that is earlier: a duplicate costs bytes, a gap would cost the snapshot). False when it was not on multicast.
    /// </summary>
    public bool ResumeOverTcp(long resumeFrom)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(resumeFrom, 1);
        lock (_route)
        {
            if (_tcpEnd == long.MaxValue)
            {
                return false;
            }
            _tcpEnd = long.MaxValue;
            _resumeAt = resumeFrom;
            var fired = _routeChanged;
            _routeChanged = new(TaskCreationOptions.RunContinuationsAsynchronously);
            fired.TrySetResult();
            return true;
        }
    }

    /// <summary>Sends a control frame (MulticastLeave) on the child's bulk lane, between batches.</summary>
    public async ValueTask SendControlAsync<T>(FrameType type, T header, CancellationToken ct)
    {
        var lane = Volatile.Read(ref _bulkLane) ?? throw new InvalidOperationException("the session is not streaming");
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        await lane.SendAsync(type, header, ReadOnlyMemory<byte>.Empty, linked.Token);
    }

    /// <summary>
    /// Before the first batch: when the child asked for multicast and this server multicasts, the join goes out and
    /// the TCP lane stops at its first sequence.
    /// </summary>
    private async Task JoinMulticastAsync(FrameConnection bulk, CancellationToken ct)
    {
        Volatile.Write(ref _bulkLane, bulk);
        if (!WantsMulticast || _server.MulticastJoiner is not { } joiner || joiner(this) is not { } join)
        {
            return;
        }
        lock (_route)
        {
            _tcpEnd = join.FirstSequence;
        }
        await bulk.SendAsync(FrameType.MulticastJoin, join, ReadOnlyMemory<byte>.Empty, ct);
    }

    /// <summary>The next sequence the TCP lane sends, with a pending resume applied, and where it must stop.</summary>
    private (long Next, long End) TcpPosition()
    {
        lock (_route)
        {
            if (_resumeAt > 0)
            {
                Interlocked.Exchange(ref _nextSequence, Math.Min(NextSequence, _resumeAt));
                _resumeAt = 0;
            }
            return (NextSequence, _tcpEnd);
        }
    }

    /// <summary>
    /// While multicast carries the child's batches: the completion goes once the stream is complete (the child applies
    /// it once it holds every batch up to its last sequence). Returns true when the TCP lane must send again (the child
    /// left multicast), false when the child acknowledged the snapshot.
    /// </summary>
    private async Task<bool> WaitWhileMulticastAsync(FrameConnection bulk, EncodedStream stream, CancellationToken ct)
    {
        while (true)
        {
            Task changed;
            lock (_route)
            {
                if (_tcpEnd == long.MaxValue)
                {
                    return true;
                }
                changed = _routeChanged.Task;
            }
            if (_stored.Task.IsCompleted)
            {
                return false;
            }
            if (stream.IsComplete)
            {
                await SendCompletionAsync(bulk, stream, ct);
                await Task.WhenAny(changed, _stored.Task).WaitAsync(ct);
            }
            else
            {
                await Task.WhenAny(changed, _stored.Task, stream.WaitForEndAsync(ct)).WaitAsync(ct);
            }
        }
    }

    /// <summary>The completion, once per session; it names the stream's last sequence.</summary>
    private async Task SendCompletionAsync(FrameConnection bulk, EncodedStream stream, CancellationToken ct)
    {
        // Set before the frame goes: the child's acknowledgement can arrive before SendAsync returns.
        if (Interlocked.Exchange(ref _completionSent, 1) != 0)
        {
            return;
        }
        var completion = stream.Completion!;
        await bulk.SendAsync(FrameType.SnapshotComplete,
            new SnapshotCompleteMessage { RootHashes = completion.RootHashes, ChunksSent = Stats.Chunks, LastSequence = stream.Count },
            ReadOnlyMemory<byte>.Empty, ct);
    }
}
