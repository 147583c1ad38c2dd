using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// Where a <see cref="DownstreamSession"/> reads what a child demands: the source reads its snapshot input, a
/// relay its store (asking upstream for what it lacks). The session classifies, filters by the child's
/// inventory and encodes the batch.
/// </summary>
public interface IDemandReader
{
    /// <summary>
    /// Reads the raw chunks [<paramref name="firstIndex"/>, +<paramref name="count"/>) of <paramref name="obj"/>
    /// back to back into a batch whose buffer is rented from <paramref name="buffers"/> (the caller owns it).
    /// The range was validated against the offer (DemandLayout); implementations check it again before
    /// touching memory. <see cref="WorkBatch.Kinds"/> and <see cref="WorkBatch.Hashes"/> are allocated, not filled.
    /// </summary>
    ValueTask<WorkBatch> ReadAsync(ObjectInfo obj, long firstIndex, int count, long requestId, IBatchBufferSource buffers, CancellationToken ct);
}
