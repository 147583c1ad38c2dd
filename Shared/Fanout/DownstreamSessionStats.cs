using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

/// <summary>Counters of one session, written by its loops and read by progress displays (Interlocked).</summary>
public sealed class DownstreamSessionStats
{
    private long _inputBytes, _chunks, _zeroChunks, _knownChunks, _payloadBytes, _demandRequests;

    public required string SessionId { get; init; }
    /// <summary>The snapshot's size, once the session knows its offer.</summary>
    public long TotalBytes { get; set; }
    public DateTime StartedUtc { get; } = DateTime.UtcNow;
    public double Seconds { get; set; }
    public long WireBytes { get; set; }
    public bool Completed { get; set; }

    /// <summary>The peer streamed to: its certificate's name under TLS, else its self-declared name marked unverified.</summary>
    public string Peer { get; init; } = "?";

    /// <summary>How the session ended (null while it runs).</summary>
    public CloseReason? CloseReason { get; set; }

    /// <summary>The close reason of a session that did not complete, as one line (summaries).</summary>
    public string? Error => Completed ? null : CloseReason?.ToString();

    /// <summary>Hashes of the sink's inventory this session kept (at most DownstreamOptions.MaxInventoryHashes).</summary>
    public long InventoryHashes { get; set; }

    public long InputBytes => Interlocked.Read(ref _inputBytes);
    public long Chunks => Interlocked.Read(ref _chunks);
    public long ZeroChunks => Interlocked.Read(ref _zeroChunks);
    public long KnownChunks => Interlocked.Read(ref _knownChunks);
    public long PayloadBytes => Interlocked.Read(ref _payloadBytes);
    public long DemandRequests => Interlocked.Read(ref _demandRequests);

    internal void AddBatch(long inputBytes, int chunks, int zero, int known, int payload)
    {
        Interlocked.Add(ref _inputBytes, inputBytes);
        Interlocked.Add(ref _chunks, chunks);
        Interlocked.Add(ref _zeroChunks, zero);
        Interlocked.Add(ref _knownChunks, known);
        Interlocked.Add(ref _payloadBytes, payload);
    }

    internal void AddDemand() => Interlocked.Increment(ref _demandRequests);
}
