namespace StreamClone.Shared.Multicast;

/// <summary>
/// The batches a <see cref="MulticastSender"/> sends: the stored bytes of each entry of a snapshot's encoded stream,
/// sequences 1..<see cref="Count"/> (the relay's EncodedStream). Appended to while the sender runs; read again for repairs.
/// </summary>
public interface IMulticastBatchSource
{
    /// <summary>Batches appended so far: sequences 1..Count exist.</summary>
    long Count { get; }

    /// <summary>True once no batch will be appended.</summary>
    bool IsComplete { get; }

    /// <summary>Completes true once batch <paramref name="sequence"/> exists, false once the stream completed without it.</summary>
    ValueTask<bool> WaitForBatchAsync(long sequence, CancellationToken cancellationToken);

    /// <summary>The stored bytes of an existing batch (1 ≤ sequence ≤ Count), held until the lease is disposed.</summary>
    ValueTask<IMulticastBatchLease> ReadBatchAsync(long sequence, CancellationToken cancellationToken);
}

/// <summary>One batch's bytes, valid until disposed.</summary>
public interface IMulticastBatchLease : IDisposable
{
    ReadOnlyMemory<byte> Bytes { get; }
}
