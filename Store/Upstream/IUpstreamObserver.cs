using StreamClone.Shared.Protocol;

namespace StreamClone.Store.Upstream;

/// <summary>
/// What a relay forwards from its upstream session: each batch once its chunks matched their hashes and before the
/// session writes it, so a relay forwards nothing unverified and its children never wait for its disk (HDFS forwards
/// before its local write too). Children verify again. A tap that throws ends the session with that fault.
/// </summary>
public interface IUpstreamObserver
{
    /// <summary>The offer, once it passed <see cref="Shared.OfferRules"/>, before the store opens the snapshot.</summary>
    void OfferReceived(SnapshotOfferMessage offer);

    /// <summary>
    /// Each bulk batch in sequence order (1..N, none skipped or repeated), verified, before it is stored; <paramref name="payload"/>
    /// is its wire bytes, valid only until the returned task completes: copy what outlives it.
    /// </summary>
    ValueTask BatchVerifiedAsync(ChunkBatchMessage header, ReadOnlyMemory<byte> payload, CancellationToken ct);

    /// <summary>The upstream's completion, after every batch was passed to <see cref="BatchVerifiedAsync"/>, before the session's own root-hash check.</summary>
    ValueTask CompletedAsync(SnapshotCompleteMessage completion, CancellationToken ct);
}
