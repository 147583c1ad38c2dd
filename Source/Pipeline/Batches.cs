using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Source.Pipeline;

/// <summary>
/// A range of chunks on its way through the graph. Owns <see cref="Raw"/> (rented) until the
/// encode stage returns it; every stage hands the batch on exactly once.
/// </summary>
internal sealed class WorkBatch
{
    public required int ObjectId { get; init; }
    public required long FirstIndex { get; init; }
    public required int Count { get; init; }
    public required int ChunkSize { get; init; }
    /// <summary>Rented; bytes [0, RawLength) are the chunks back to back (the last may be short).</summary>
    public required byte[] Raw { get; init; }
    public required int RawLength { get; init; }
    /// <summary>Non-zero for a demand answer.</summary>
    public long RequestId { get; init; }

    /// <summary>Per chunk, filled by the classify stage.</summary>
    public required ChunkEntryKind[] Kinds { get; init; }
    public required ChunkHash[] Hashes { get; init; }

    public ReadOnlySpan<byte> Chunk(int i)
    {
        var start = i * ChunkSize;
        return Raw.AsSpan(start, Math.Min(ChunkSize, RawLength - start));
    }

    public void ReturnRaw() => BatchBuffers.Pool.Return(Raw);
}

/// <summary>A batch ready for the wire: header plus a rented payload the sender returns after writing.</summary>
internal sealed class EncodedBatch
{
    public required ChunkBatchMessage Header { get; init; }
    public required byte[] Payload { get; init; }
    public required int PayloadLength { get; init; }
    public required int ChunkCount { get; init; }
    public required long InputBytes { get; init; }
    public required int ZeroChunks { get; init; }
    public required int KnownChunks { get; init; }

    public ReadOnlyMemory<byte> PayloadMemory => Payload.AsMemory(0, PayloadLength);

    public void ReturnPayload() => BatchBuffers.Pool.Return(Payload);
}
