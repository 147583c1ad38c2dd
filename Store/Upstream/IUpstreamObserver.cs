using StreamClone.Shared.Protocol;

namespace StreamClone.Store.Upstream;

/// <summary>
/// What a relay forwards from its upstream session, cut-through: called before the session stores (or even
/// verifies) anything, so children get each batch before the relay's own disk write. Children verify.
/// A tap that throws ends the session with that fault.
/// </summary>
public interface IUpstreamObserver
{
    /// <summary>The offer, once it passed <see cref="Shared.OfferRules"/>, before the store opens the snapshot.</summary>
    void OfferReceived(SnapshotOfferMessage offer);

    /// <summary>
    /// Each bulk batch in sequence order (1..N, none skipped or repeated), before verify. <paramref name="payload"/>
    /// is valid only until the returned task completes: copy what outlives it.
    /// </summary>
    ValueTask BatchReceivedAsync(ChunkBatchMessage header, ReadOnlyMemory<byte> payload, CancellationToken ct);

    /// <summary>The upstream's completion, after every batch was passed to <see cref="BatchReceivedAsync"/>.</summary>
    ValueTask CompletedAsync(SnapshotCompleteMessage completion, CancellationToken ct);
}
