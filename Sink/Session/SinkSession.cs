using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Sink.Store;

namespace StreamClone.Sink.Session;

/// <summary>
/// A sink's session with a source (or relay): it connects, receives the offer, tells the source
/// what the store already holds, and assembles the snapshot from the bulk stream while
/// <see cref="ReadAsync"/> answers readers, fetching what they touch first over the demand lane.
/// Lifecycle here; the bulk loop is in SinkSession.Receive.cs, storing in SinkSession.Store.cs,
/// the demand lane in SinkSession.Demand.cs.
/// </summary>
public sealed partial class SinkSession : IAsyncDisposable
{
    private readonly ChunkStore _store;
    private readonly SinkOptions _options;
    private readonly ILogger _logger;
    private readonly FrameConnection _bulk;
    private readonly CancellationTokenSource _stop;
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private SinkSession(ChunkStore store, SinkOptions options, ILogger logger, FrameConnection bulk, SnapshotAssembly snapshot, string sessionId, CancellationToken ct)
    {
        _store = store;
        _options = options;
        _logger = logger;
        _bulk = bulk;
        Snapshot = snapshot;
        SessionId = sessionId;
        _stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Snapshot.ChunkPresent += OnChunkPresent;
    }

    public string SessionId { get; }

    public SnapshotAssembly Snapshot { get; }

    public SinkStats Stats { get; } = new();

    public long WireBytes => _bulk.BytesReceived + (_demand?.BytesReceived ?? 0);

    public double Seconds => _clock.Elapsed.TotalSeconds;

    /// <summary>
    /// Connects both lanes and takes the offer. The snapshot is readable (through
    /// <see cref="ReadAsync"/>) as soon as this returns; call <see cref="RunAsync"/> for the bulk stream.
    /// </summary>
    public static async Task<SinkSession> ConnectAsync(EndPoint source, ChunkStore store, SinkOptions options, TransportOptions transport, ILogger logger, CancellationToken ct)
    {
        var sessionId = Guid.NewGuid().ToString("N");
        var upstream = ChunkStore.UpstreamName(source);
        var bulk = await FrameConnection.ConnectAsync(source, Lane.Bulk, transport, logger, ct);
        var sessionOwnsBulk = false;
        try
        {
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(ct);
            handshake.CancelAfter(transport.HandshakeTimeout);
            await HelloAsync(bulk, Lane.Bulk, sessionId, options, handshake.Token);
            var offer = await bulk.ReceiveOneAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, handshake.Token);
            SnapshotAssembly snapshot;
            try
            {
                // The store checks the offer (OfferRules) and the node's limits before it writes anything.
                snapshot = store.OpenSnapshot(offer, upstream);
            }
            catch (StreamClone.Shared.Protocol.ProtocolViolationException ex)
            {
                // The source learns why (a malformed offer, or one this store will not take) before the lane closes.
                await bulk.FailAsync(ex.Code, ex.Message);
                throw;
            }
            var inventory = store.GetInventory(upstream);
            // A source accepts at most one hash per offered chunk (more could not help); a store holding
            // other snapshots may list more, and the hashes past that only lose some dedup. OfferRules
            // bounded every object's chunk count, so the sum cannot overflow.
            var offered = offer.Objects.Sum(o => ChunkMath.ChunkCount(o.Size, o.ChunkSize));
            await SendInventoryAsync(bulk, inventory, (int)Math.Min(inventory.Count, offered), ct);
            SinkLog.SessionStarted(logger, sessionId, offer.SnapshotId, offer.Objects.Count, offer.Objects.Sum(o => o.Size),
                snapshot.PresentChunks, snapshot.TotalChunks, inventory.Count);

            var session = new SinkSession(store, options, logger, bulk, snapshot, sessionId, ct);
            try
            {
                var demand = await FrameConnection.ConnectAsync(source, Lane.Demand, transport, logger, ct);
                await HelloAsync(demand, Lane.Demand, sessionId, options, handshake.Token);
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
        catch
        {
            if (!sessionOwnsBulk)
            {
                await bulk.DisposeAsync();
            }
            throw;
        }
    }

    private static async Task HelloAsync(FrameConnection connection, Lane lane, string sessionId, SinkOptions options, CancellationToken ct)
    {
        await connection.SendAsync(FrameType.Hello,
            new HelloMessage { Role = "sink", Lane = lane, SessionId = sessionId, PeerName = options.PeerName },
            ReadOnlyMemory<byte>.Empty, ct);
        var hello = await connection.ReceiveOneAsync<HelloMessage>(FrameType.Hello, ct);
        connection.Metrics.SetPeer(hello.PeerName);
        if (hello.ProtocolVersion != ProtocolVersions.Current)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.UnsupportedVersion,
                $"source speaks protocol version {hello.ProtocolVersion}, this sink speaks {ProtocolVersions.Current}");
        }
    }

    private static async Task SendInventoryAsync(FrameConnection bulk, IReadOnlyList<ChunkHash> inventory, int total, CancellationToken ct)
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
            await bulk.SendAsync(FrameType.Inventory, new InventoryMessage { Count = count, Last = sent == total },
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
        FailPendingReads(new ObjectDisposedException(nameof(SinkSession), "the sink session was closed"));
        if (_demand is not null)
        {
            await _demand.DisposeAsync();
        }
        await _bulk.DisposeAsync();
        try
        {
            // Whatever was verified becomes durable: a restart resumes from here.
            await Snapshot.FlushAsync(CancellationToken.None);
        }
        catch (IOException)
        {
            // Already reported by the failing path; shutdown never throws.
        }
        _stop.Dispose();
    }
}
