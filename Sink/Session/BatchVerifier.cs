using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Sink.Session;

/// <summary>A received batch: its header and a rented copy of its payload (the frame's slices die at AdvanceTo).</summary>
internal sealed class ReceivedBatch
{
    public required ChunkBatchMessage Header { get; init; }
    public required byte[] Payload { get; init; }
    public required int PayloadLength { get; init; }
    /// <summary>Set instead of a batch on the last item: the source's completion message.</summary>
    public SnapshotCompleteMessage? Completion { get; init; }
}

/// <summary>A batch whose every Data chunk matched its hash; owns the rented <see cref="Data"/>.</summary>
internal sealed class VerifiedBatch
{
    public required ObjectInfo Object { get; init; }
    public required ChunkBatchMessage Header { get; init; }
    public required byte[] Data { get; init; }
    public required int PayloadLength { get; init; }
    public SnapshotCompleteMessage? Completion { get; init; }

    public void Return()
    {
        if (Data.Length > 0)
        {
            BatchBuffers.Pool.Return(Data);
        }
    }
}

/// <summary>
/// verify → decompress → hash check, before anything reaches the store. Pure CPU on one batch, so
/// the bulk path runs it in parallel; the demand path calls it inline.
/// </summary>
internal static class BatchVerifier
{
    public static VerifiedBatch Verify(ReceivedBatch received, IReadOnlyList<ObjectInfo> objects)
    {
        try
        {
            if (received.Completion is not null)
            {
                return new VerifiedBatch { Object = objects[0], Header = received.Header, Data = [], PayloadLength = 0, Completion = received.Completion };
            }
            var header = received.Header;
            var obj = BatchLayout.Validate(header, objects);
            var data = header.RawLength == 0 ? [] : BatchBuffers.Pool.Rent(header.RawLength);
            try
            {
                BatchCodec.Decompress(header.Codec, received.Payload.AsSpan(0, received.PayloadLength), data.AsSpan(0, header.RawLength));
                var at = 0;
                var h = 0;
                for (var i = 0; i < header.Kinds.Length; i++)
                {
                    var kind = (ChunkEntryKind)header.Kinds[i];
                    if (kind == ChunkEntryKind.Zero)
                    {
                        continue;
                    }
                    if (kind == ChunkEntryKind.Data)
                    {
                        var index = header.FirstIndex + i;
                        var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index);
                        var expected = ChunkHash.Read(header.Hashes.AsSpan(h * ChunkHash.Size));
                        var actual = ChunkHash.Compute(data.AsSpan(at, length));
                        if (actual != expected)
                        {
                            ThrowHelper.ThrowProtocol(ProtocolError.HashMismatch,
                                $"{obj.Name} chunk {index}: content hashes to {actual.ToShortString()}…, the frame says {expected.ToShortString()}…");
                        }
                        at += length;
                    }
                    h++;
                }
            }
            catch
            {
                if (data.Length > 0)
                {
                    BatchBuffers.Pool.Return(data);
                }
                throw;
            }
            return new VerifiedBatch { Object = obj, Header = header, Data = data, PayloadLength = received.PayloadLength };
        }
        finally
        {
            if (received.Payload.Length > 0)
            {
                BatchBuffers.Pool.Return(received.Payload);
            }
        }
    }
}
