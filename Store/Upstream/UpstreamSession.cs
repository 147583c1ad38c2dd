using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Store.Upstream;

/// <summary>
/// A sink's session with a source (or relay): it connects, receives the offer, tells the source
/// what the store already holds, and assembles the snapshot from the bulk stream while
/// <see cref="ReadAsync"/> answers readers, fetching what they touch first over the demand lane.
/// Lifecycle here; the bulk loop is in UpstreamSession.Receive.cs, storing in UpstreamSession.Store.cs,
/// the demand lane in UpstreamSession.Demand.cs.
/// </summary>
public sealed partial class UpstreamSession : IAsyncDisposable
{
    private readonly ChunkStore _store;
    private readonly UpstreamOptions _options;
    private readonly ILogger _logger;
    private readonly FrameConnection _bulk;
    private readonly CancellationTokenSource _stop;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private readonly SnapshotLease _lease;

    private UpstreamSession(ChunkStore store, UpstreamOptions options, ILogger logger, FrameConnection bulk, SnapshotLease lease, SnapshotOfferMessage offer, string sessionId, PeerIdentity source, CancellationToken ct)
    {
        Source = source;
        _store = store;
        _options = options;
        _logger = logger;
        _bulk = bulk;
        _lease = lease;
        Snapshot = lease.Snapshot;
        Offer = offer;
        SessionId = sessionId;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Snapshot.ChunkPresent += OnChunkPresent;
        if (options.MulticastInterface is not null)
        {
            // Batches may come from the group as well as the lane, in any order.
            EnableExternalFeed();
        }
    }

    public string SessionId { get; }

    /// <summary>The source (or relay) this session pulls from: its certificate's name under TLS.</summary>
    public PeerIdentity Source { get; }

    /// <summary>How the session ended (null while it runs).</summary>
    public CloseReason? CloseReason { get; private set; }

    public SnapshotAssembly Snapshot { get; }

    /// <summary>The upstream's offer (its <see cref="SnapshotOfferMessage.Upstreams"/> are the reattach hints).</summary>
    public SnapshotOfferMessage Offer { get; }

    public UpstreamStats Stats { get; } = new();

    public long WireBytes => _bulk.BytesReceived + (_demand?.BytesReceived ?? 0);

    public double Seconds => _clock.Elapsed.TotalSeconds;

    /// <summary>
    /// Connects both lanes and takes the offer. The snapshot is readable (through
    /// <see cref="ReadAsync"/>) as soon as this returns; call <see cref="RunAsync"/> for the bulk stream.
    /// </summary>
    public static Task<UpstreamSession> ConnectAsync(EndPoint source, ChunkStore store, UpstreamOptions options, TransportOptions transport, ILogger logger, CancellationToken ct)
    {
        Connector.WarnIfInsecure(options.Tls, logger, $"sink of {source}");
        return ConnectAsync((lane, token) => Connector.ConnectAsync(source, lane, transport, options.Tls, logger, token),
            ChunkStore.UpstreamName(source), store, options, transport, logger, ct);
    }

    /// <summary>
    /// The same over any transport: <paramref name="connect"/> opens one lane (a socket, TLS, or an in-memory
    /// pipe pair in session tests); <paramref name="upstream"/> names the source in the store.
    /// </summary>
    public static async Task<UpstreamSession> ConnectAsync(Func<Lane, CancellationToken, Task<FrameConnection>> connect, string upstream,
        ChunkStore store, UpstreamOptions options, TransportOptions transport, ILogger logger, CancellationToken ct)
    {
        var sessionId = Guid.NewGuid().ToString("N");
        var bulk = await connect(Lane.Bulk, ct);
        var sessionOwnsBulk = false;
        SnapshotLease? lease = null;
        try
        {
            var hello = await SessionHandshake.ClientAsync(bulk, options.Role, Lane.Bulk, sessionId, options.PeerName, options.Tls, ct);
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(ct);
            handshake.CancelAfter(transport.HandshakeTimeout);
            var offer = await bulk.ReceiveOneAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, handshake.Token);
            // The store checks the offer (OfferRules) and the node's limits before it writes anything; a refusal
            // goes to the source (OfferRefused, MalformedHeader) through the failure policy below.
            OfferRules.Validate(offer);
            if (options.RequiredSnapshotId is { } required && !string.Equals(offer.SnapshotId, required, StringComparison.Ordinal))
            {
                ThrowHelper.ThrowProtocol(ProtocolError.OfferRefused, $"offered snapshot {offer.SnapshotId}, this node is pulling {required}");
            }
            options.Observer?.OfferReceived(offer);
            // A lease, released when the session ends: in a bounded store (a relay's cache) the snapshot is not evicted
            // while it is pulled, and becomes evictable after; an unbounded store (a sink's) evicts nothing either way.
            lease = store.OpenSnapshotLease(offer, upstream);
            var snapshot = lease.Snapshot;
            var inventory = store.GetInventory(upstream);
            // A source accepts at most one hash per offered chunk (more could not help); a store holding
            // other snapshots may list more, and the hashes past that only lose some dedup. OfferRules
            // bounded every object's chunk count, so the sum cannot overflow.
            var offered = offer.Objects.Sum(o => ChunkMath.ChunkCount(o.Size, o.ChunkSize));
            await SendInventoryAsync(bulk, inventory, (int)Math.Min(inventory.Count, offered), options.MulticastInterface is not null, ct);
            UpstreamLog.SessionStarted(logger, sessionId, hello.Peer.ToString(), offer.SnapshotId, offer.Objects.Count, offer.Objects.Sum(o => o.Size),
                snapshot.PresentChunks, snapshot.TotalChunks, inventory.Count);

            var session = new UpstreamSession(store, options, logger, bulk, lease, offer, sessionId, hello.Peer, ct);
            try
            {
                var demand = await connect(Lane.Demand, ct);
                try
                {
                    await SessionHandshake.ClientAsync(demand, options.Role, Lane.Demand, sessionId, options.PeerName, options.Tls, ct);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    await SessionFailure.CloseAsync(demand, ex);
                    await demand.DisposeAsync();
                    throw;
                }
                session.AttachDemandLane(demand);
            }
            catch
            {
                // The session disposes the bulk lane; disposing it twice would hide this error behind an ObjectDisposedException.
                sessionOwnsBulk = true;
                await session.DisposeAsync();
                throw;
            }
            return session;
        }
        catch (Exception ex) when (!sessionOwnsBulk)
        {
            // One policy for every failure before the session runs: a refused offer or a broken Hello is told to the source.
            await SessionFailure.CloseAsync(bulk, ex, StoreFault);
            await bulk.DisposeAsync();
            lease?.Dispose();
            throw;
        }
    }

    /// <summary>The sink's own failure (its store cannot take the snapshot): the source is told instead of seeing a drop.</summary>
    private static CloseReason StoreFault(Exception ex) =>
        CloseReason.Fault(ProtocolError.StoreFailure, $"the sink cannot store the snapshot: {ex.Message}");

    private static async Task SendInventoryAsync(FrameConnection bulk, IReadOnlyList<ChunkHash> inventory, int total, bool wantsMulticast, CancellationToken ct)
    {
        const int perFrame = WireLimits.MaxInventoryHashesPerFrame;
        var buffer = new byte[Math.Min(perFrame, Math.Max(1, total)) * ChunkHash.Size];
        var sent = 0;
        do
        {
            var count = Math.Min(perFrame, total - sent);
            for (var i = 0; i < count; i++)
            {
                inventory[sent + i].Write(buffer.AsSpan(i * ChunkHash.Size));
            }
            sent += count;
            await bulk.SendAsync(FrameType.Inventory, new InventoryMessage { Count = count, Last = sent == total, WantsMulticast = wantsMulticast && sent == total },
                buffer.AsMemory(0, count * ChunkHash.Size), ct);
        }
        while (sent < total);
    }

    /// <summary>A reason as a sentence: exception messages end with a period or not, the log line goes on after it.</summary>
    private static string Sentence(string reason) => reason.EndsWith('.') ? reason : reason + ".";

    public async ValueTask DisposeAsync()
    {
        Snapshot.ChunkPresent -= OnChunkPresent;
        await _stop.CancelAsync();
        await StopMulticastAsync();
        FailPendingReads(new ObjectDisposedException(nameof(UpstreamSession), "the sink session was closed"));
        if (_demand is not null)
        {
            await _demand.DisposeAsync();
        }
        await _bulk.DisposeAsync();
        // The stages and the receive loop stop with _stop and the lanes, so this ends.
        await _buffersReturned.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        try
        {
            // Whatever was verified becomes durable: a restart resumes from here.
            await Snapshot.FlushAsync(CancellationToken.None);
        }
        catch (IOException)
        {
            // Already reported by the failing path; shutdown never throws.
        }
        _lease.Dispose();
        _stop.Dispose();
    }
}
