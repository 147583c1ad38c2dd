using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Chunking;

/// <summary>
/// A range of chunks on its way through the graph. Owns <see cref="Raw"/>: each stage hands the
/// batch (and with it the buffer) on exactly once, and the encode stage disposes it.
/// </summary>
public sealed class WorkBatch
{
    public required int ObjectId { get; init; }
    public required long FirstIndex { get; init; }
    public required int Count { get; init; }
    public required int ChunkSize { get; init; }
    /// <summary>Bytes [0, RawLength) are the chunks back to back (the last may be short).</summary>
    public required BatchBuffer Raw { get; init; }
    public int RawLength => Raw.Length;
    /// <summary>Non-zero for a demand answer.</summary>
    public long RequestId { get; init; }

    /// <summary>Per chunk, filled by the classify stage.</summary>
    public required ChunkEntryKind[] Kinds { get; init; }
    public required ChunkHash[] Hashes { get; init; }

    /// <summary>A batch of <paramref name="count"/> chunks of <paramref name="obj"/> whose bytes are in <paramref name="raw"/>
    /// (taken over), to be classified: what every reader (a source's input, a relay's cache) hands the encoder.</summary>
    public static WorkBatch Of(ObjectInfo obj, long firstIndex, int count, BatchBuffer raw, long requestId) => new()
    {
        ObjectId = obj.Id,
        FirstIndex = firstIndex,
        Count = count,
        ChunkSize = obj.ChunkSize,
        Raw = raw,
        RequestId = requestId,
        Kinds = new ChunkEntryKind[count],
        Hashes = new ChunkHash[count],
    };

    public ReadOnlySpan<byte> Chunk(int i)
    {
        var start = i * ChunkSize;
        return Raw.Span.Slice(start, Math.Min(ChunkSize, RawLength - start));
    }
}

/// <summary>
/// A batch ready for the wire: header plus its payload. Owns <see cref="Payload"/>; the sender
/// disposes the batch once the frame is written into the connection's pipe (the pipe has its own copy).
/// </summary>
public sealed class EncodedBatch : IDisposable
{
    public required ChunkBatchMessage Header { get; init; }
    public required BatchBuffer Payload { get; init; }
    public int PayloadLength => Payload.Length;
    public required int ChunkCount { get; init; }
    public required long InputBytes { get; init; }
    public required int ZeroChunks { get; init; }
    public required int KnownChunks { get; init; }

    public ReadOnlyMemory<byte> PayloadMemory => Payload.Memory;

    public void Dispose() => Payload.Dispose();
}
