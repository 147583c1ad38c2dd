namespace StreamClone.Store.Upstream;

/// <summary>Counters of one sink session (Interlocked; read by progress displays and summaries).</summary>
public sealed class UpstreamStats
{
    private long _chunks, _dataChunks, _zeroChunks, _knownChunks, _rawBytes, _payloadBytes, _demandAnswers;

    public long Chunks => Interlocked.Read(ref _chunks);
    public long DataChunks => Interlocked.Read(ref _dataChunks);
    public long ZeroChunks => Interlocked.Read(ref _zeroChunks);
    public long KnownChunks => Interlocked.Read(ref _knownChunks);
    /// <summary>Bytes of the snapshot covered by the chunks received (zero and known included).</summary>
    public long CoveredBytes => Interlocked.Read(ref _rawBytes);
    public long PayloadBytes => Interlocked.Read(ref _payloadBytes);
    public long DemandAnswers => Interlocked.Read(ref _demandAnswers);

    internal void AddBatch(int chunks, int data, int zero, int known, long covered, int payload, bool demand)
    {
        Interlocked.Add(ref _chunks, chunks);
        Interlocked.Add(ref _dataChunks, data);
        Interlocked.Add(ref _zeroChunks, zero);
        Interlocked.Add(ref _knownChunks, known);
        Interlocked.Add(ref _rawBytes, covered);
        Interlocked.Add(ref _payloadBytes, payload);
        if (demand)
        {
            Interlocked.Increment(ref _demandAnswers);
        }
    }
}
