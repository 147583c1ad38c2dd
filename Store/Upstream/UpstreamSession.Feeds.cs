using StreamClone.Shared.Buffers;
using StreamClone.Shared.Protocol;

namespace StreamClone.Store.Upstream;

public sealed partial class UpstreamSession
{
    private readonly TaskCompletionSource _assemblerReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private SequenceAssembler? _assembler;
    private BatchBufferScope? _bulkBuffers;
    private volatile bool _externalFeed;

    /// <summary>
    /// Frames on the bulk lane other than ChunkBatch and SnapshotComplete (MulticastJoin, MulticastLeave): the handler
    /// runs inside the receive loop (the frame's bytes live until it returns) and throws to fail the session.
    /// Null (the default): such a frame is an UnexpectedFrame protocol error. Set before <see cref="RunAsync"/>.
    /// </summary>
    public Func<Frame, CancellationToken, ValueTask>? BulkControlHandler { get; set; }

    /// <summary>
    /// Declares a second feed of bulk batches beside the TCP bulk lane (a multicast receiver). From then on the lane
    /// may bring batches out of order (the receiver's gaps), and <see cref="PostExternalBatchAsync"/> is open.
    /// Call before <see cref="RunAsync"/>.
    /// </summary>
    public void EnableExternalFeed() => _externalFeed = true;

    /// <summary>Batches dropped because an earlier one of the same sequence had passed or was held (another feed brought it first).</summary>
    public long DuplicateBatches => _assembler?.Duplicates ?? 0;

    /// <summary>
    /// Posts a bulk batch received by an external feed, with its <see cref="ChunkBatchMessage.Sequence"/>. The payload
    /// is copied. Returns false when it was dropped: already passed or held (a duplicate), or beyond the reorder window
    /// (the feed must bring it again, or the TCP lane will). Waits (backpressure) while the verify stage is full.
    /// </summary>
    public async Task<bool> PostExternalBatchAsync(ChunkBatchMessage header, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(header);
        if (!_externalFeed)
        {
            throw new InvalidOperationException("call EnableExternalFeed before RunAsync to add a feed");
        }
        if (header.Sequence < 1)
        {
            Shared.ThrowHelper.ThrowProtocol(ProtocolError.OutOfSequence, $"external feed: batch sequence {header.Sequence} (bulk batches are numbered from 1)");
        }
        await _assemblerReady.Task.WaitAsync(ct);
        var copy = _bulkBuffers!.Rent(payload.Length);
        payload.Span.CopyTo(copy.Span);
        var outcome = await _assembler!.OfferAsync(header.Sequence, new ReceivedBatch { Header = header, Payload = copy }, ct);
        return outcome is SequenceOutcome.Emitted or SequenceOutcome.Held;
    }
}
