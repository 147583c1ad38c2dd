using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Store.Upstream;

/// <summary>
/// A received batch: its header and a pooled copy of its payload (the frame's slices die at
/// AdvanceTo). Owns <see cref="Payload"/> until <see cref="BatchVerifier.Verify"/> takes it.
/// </summary>
internal sealed class ReceivedBatch : IDisposable
{
    public required ChunkBatchMessage Header { get; init; }
    /// <summary>Null only on the completion marker.</summary>
    public required BatchBuffer? Payload { get; init; }
    public int PayloadLength => Payload?.Length ?? 0;
    /// <summary>Set instead of a batch on the last item: the source's completion message.</summary>
    public SnapshotCompleteMessage? Completion { get; init; }

    /// <summary>For a holder that will not hand the batch to Verify after all.</summary>
    public void Dispose() => Payload?.Dispose();
}

/// <summary>A batch whose every Data chunk matched its hash. Owns <see cref="Data"/>; the store stage disposes it.</summary>
internal sealed class VerifiedBatch : IDisposable
{
    public required ObjectInfo Object { get; init; }
    public required ChunkBatchMessage Header { get; init; }
    /// <summary>The Data chunks back to back; null on the completion marker.</summary>
    public required BatchBuffer? Data { get; init; }
    /// <summary>Bytes the batch took on the wire (for stats).</summary>
    public required int PayloadLength { get; init; }
    public SnapshotCompleteMessage? Completion { get; init; }

    /// <summary>The batch as it came on the wire (compressed), kept only when a relay forwards it after verification.</summary>
    public BatchBuffer? Payload { get; init; }

    public ReadOnlySpan<byte> DataSpan => Data is null ? default : Data.Span;

    public void Dispose()
    {
        Data?.Dispose();
        Payload?.Dispose();
    }
}

/// <summary>
/// verify → decompress → hash check, before anything reaches the store. Pure CPU on one batch, so
/// the bulk path runs it in parallel; the demand path calls it inline.
/// </summary>
internal static class BatchVerifier
{
    /// <summary>
    /// Takes ownership of <paramref name="received"/>'s payload and disposes it, whatever happens;
    /// the returned batch owns its data, rented from <paramref name="buffers"/>.
    /// </summary>
    /// <remarks>With <paramref name="keepPayload"/> the wire payload goes on in the verified batch (a relay forwards exactly
    /// those bytes once they verified) instead of being disposed.</remarks>
    public static VerifiedBatch Verify(ReceivedBatch received, IReadOnlyList<ObjectInfo> objects, IBatchBufferSource buffers, bool keepPayload = false)
    {
        VerifiedBatch verified;
        try
        {
            verified = VerifyData(received, objects, buffers);
        }
        catch
        {
            received.Payload?.Dispose();
            throw;
        }
        if (!keepPayload || verified.Completion is not null)
        {
            received.Payload?.Dispose();
            return verified;
        }
        return new VerifiedBatch { Object = verified.Object, Header = verified.Header, Data = verified.Data, PayloadLength = verified.PayloadLength, Payload = received.Payload };
    }

    /// <summary>Checks every Data chunk; the payload stays the caller's (disposed by it also when this throws).</summary>
    private static VerifiedBatch VerifyData(ReceivedBatch received, IReadOnlyList<ObjectInfo> objects, IBatchBufferSource buffers)
    {
        var payload = received.Payload;
        if (received.Completion is not null)
        {
            return new VerifiedBatch { Object = objects[0], Header = received.Header, Data = null, PayloadLength = 0, Completion = received.Completion };
        }
        var header = received.Header;
        var obj = BatchLayout.Validate(header, objects);
        // RawLength is capped by BatchLayout.Validate (WireLimits.MaxBatchRawBytes) before it sizes anything.
        var data = buffers.Rent(header.RawLength);
        try
        {
            BatchCodec.Decompress(header.Codec, payload is null ? default : payload.Span, data.Span);
            var bytes = data.Span;
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
                    var actual = ChunkHash.Compute(bytes.Slice(at, length));
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
            data.Dispose();
            throw;
        }
        return new VerifiedBatch { Object = obj, Header = header, Data = data, PayloadLength = received.PayloadLength };
    }
}
