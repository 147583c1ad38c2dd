using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Protocol;
using StreamClone.Source.Inputs;

namespace StreamClone.Source.Pipeline;

/// <summary>The source's demand reads: straight from its snapshot input (image files, a live VM's RAM and disks).</summary>
internal sealed class InputDemandReader(ISnapshotInput input) : IDemandReader
{
    public ValueTask<WorkBatch> ReadAsync(ObjectInfo obj, long firstIndex, int count, long requestId, IBatchBufferSource buffers, CancellationToken ct) =>
        InputBatchReader.ReadAsync(input, obj, firstIndex, count, requestId, buffers, ct);
}
