using System.Net;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Store;
using StreamClone.Store.Upstream;

namespace StreamClone.Relay;

/// <summary>
/// A relay: pulls one snapshot from its upstream into its cache (a bounded <see cref="ChunkStore"/>) and serves it to
/// any number of children (sinks, further relays) while it arrives:
/// <code>
/// UpstreamClient (reattaches) → observer taps: offer → EncodedStream created (hints extended)
///                                              each batch, verified, before store → appended (Known expanded) → DownstreamServer
///                                              completion → EncodedStream.Complete
/// child demand → IDemandReader: cache (hit) or EnsurePresentAsync upstream (miss), merged per chunk
/// </code>
/// Lifecycle here; the taps in RelayNode.Forward.cs, demand in RelayNode.Demand.cs.
/// </summary>
public sealed partial class RelayNode : IAsyncDisposable
{
    private readonly ChunkStore _store;
    private readonly RelayOptions _options;
    private readonly ILogger _logger;
    private readonly UpstreamClient _client;
    private readonly DownstreamServer _downstream;
    private readonly IDisposable _progress;
    private readonly TaskCompletionSource<SnapshotAssembly> _snapshot = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private SnapshotLease? _lease;

    public RelayNode(ChunkStore store, RelayOptions options, TransportOptions transport, ILogger logger)
    {
        options.Validate();
        _store = store;
        _options = options;
        _logger = logger;
        var pull = options.Pull with { Upstream = options.Pull.Upstream with { Role = NodeRoles.Relay, Observer = new Forwarder(this), Tls = options.Tls } };
        _client = new UpstreamClient(options.Upstreams, store, pull, transport, logger);
        _downstream = new DownstreamServer(options, transport, NodeRoles.Relay, MetricRole.Relay, new CacheDemandReader(this), logger);
        _progress = SnapshotProgress.Register(MetricRole.Relay,
            () => _snapshot.Task.IsCompletedSuccessfully ? (_snapshot.Task.Result.PresentChunks, _snapshot.Task.Result.TotalChunks) : (0, 0));
    }

    /// <summary>Raised when a child's session that began streaming ends (see <see cref="DownstreamSessionStats.Completed"/>).</summary>
    public event Action<DownstreamSessionStats>? SessionEnded
    {
        add => _downstream.SessionEnded += value;
        remove => _downstream.SessionEnded -= value;
    }

    /// <summary>The server children connect to (a multicast fanout hooks its control frames).</summary>
    public DownstreamServer Downstream => _downstream;

    /// <summary>The relay's log, once its upstream offered.</summary>
    public EncodedStream? Stream => Volatile.Read(ref _stream);

    /// <summary>Completes with the relay's log once its upstream offered (a multicast fanout sends it).</summary>
    public Task<EncodedStream> StreamReady => _streamReady.Task;

    /// <summary>Upstream sessions connected so far (more than 1 after a reattach).</summary>
    public int UpstreamSessions => _client.Sessions;

    /// <summary>Whether the relay has the whole snapshot from its upstream (verified and stored).</summary>
    public bool UpstreamCompleted { get; private set; }

    public IPEndPoint Listen(IPEndPoint endPoint)
    {
        var bound = _downstream.Listen(endPoint);
        RelayLog.Listening(_logger, bound.ToString(), string.Join(",", _options.Upstreams), _store.Directory, _store.MaxCacheBytes ?? -1);
        return bound;
    }

    /// <summary>
    /// Pulls and serves until <paramref name="ct"/> is cancelled. Returns normally when stopped; throws with one line when
    /// the upstream is lost for good (the children are told first, and reattach to their hints).
    /// </summary>
    public async Task RunAsync(CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var serving = _downstream.RunAsync(stop.Token);
        var pulling = PullAsync(stop.Token);
        await Task.WhenAny(serving, pulling);
        if (pulling.IsFaulted && !ct.IsCancellationRequested)
        {
            await stop.CancelAsync();
            await serving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await pulling;
        }
        await serving;
        await stop.CancelAsync();
        await pulling.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private async Task PullAsync(CancellationToken ct)
    {
        var run = _client.RunAsync(ct);
        try
        {
            var first = await _client.FirstSession;
            AttachSnapshot(first.Snapshot.SnapshotId);
            await run;
            UpstreamCompleted = true;
            RelayLog.UpstreamComplete(_logger, first.Snapshot.SnapshotId, Stream?.Count ?? 0);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            await ((Task)run).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _snapshot.TrySetException(ex);
            if (ct.IsCancellationRequested)
            {
                Stream?.Fail(CloseReason.LocalShutdown("relay shutting down"));
                return;
            }
            var reason = SessionFailure.Classify(ex);
            RelayLog.UpstreamLost(_logger, reason.ToString());
            Stream?.Fail(CloseReason.Fault(ProtocolError.IncompleteSnapshot, $"the relay lost its upstream: {reason.Detail}"));
            FailureReport.MarkLogged(ex);
            throw;
        }
    }

    /// <summary>
    /// The relay's own reading lease on the snapshot (its sessions' writing leases come and go with reattaches), and
    /// the hashes a previous run's journal recorded: cached chunks are served only after they re-hash to those.
    /// </summary>
    private void AttachSnapshot(string snapshotId)
    {
        var lease = _store.AcquireSnapshot(snapshotId) ?? throw new InvalidOperationException($"snapshot {snapshotId} vanished from the cache");
        _lease = lease;
        var snapshot = lease.Snapshot;
        InitializeHashes(snapshot.Objects);
        long loaded = 0;
        snapshot.ReadDurableHashes((objectId, index, hash) =>
        {
            if (RecordHash(objectId, index, hash))
            {
                loaded++;
            }
        });
        if (loaded > 0)
        {
            RelayLog.Resumed(_logger, snapshotId, snapshot.PresentChunks, snapshot.TotalChunks, loaded);
        }
        _snapshot.TrySetResult(snapshot);
    }

    private Task<SnapshotAssembly> SnapshotAsync(CancellationToken ct) => _snapshot.Task.WaitAsync(ct);

    public async ValueTask DisposeAsync()
    {
        if (_multicast is not null)
        {
            await _multicast.DisposeAsync();
        }
        await _downstream.DisposeAsync();
        await _client.DisposeAsync();
        _progress.Dispose();
        _lease?.Dispose();
        Stream?.Dispose();
    }
}
