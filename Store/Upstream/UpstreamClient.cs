using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Store.Upstream;

/// <summary>
/// A sink (or relay) pulling one snapshot through a chain that may lose nodes: an <see cref="UpstreamSession"/> with the first
/// candidate that answers, and when that upstream dies mid-stream a new session with the next candidate (the
/// configured list, then the hints of the last offer's <see cref="SnapshotOfferMessage.Upstreams"/>), resuming from
/// what the store holds. Bounded by <see cref="UpstreamClientOptions.ReattachTimeout"/> per outage; every attempt is one log
/// line. Readers (<see cref="ReadAsync"/>) wait through a reattach instead of failing.
/// </summary>
public sealed class UpstreamClient : IAsyncDisposable
{
    private readonly IReadOnlyList<string> _configured;
    private readonly ChunkStore _store;
    private readonly UpstreamClientOptions _options;
    private readonly TransportOptions _transport;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource<UpstreamSession> _firstSession = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // The session readers use: completed while one is connected, pending during a reattach, faulted once the client gave up.
    private TaskCompletionSource<UpstreamSession> _session = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private UpstreamSession? _current;
    private readonly HashSet<string> _liars = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _badHints = new(StringComparer.Ordinal);

    /// <summary>A client over <paramref name="candidates"/>: upstreams in order of preference, each HOST:PORT (at least one).</summary>
    public UpstreamClient(IReadOnlyList<string> candidates, ChunkStore store, UpstreamClientOptions options, TransportOptions transport, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        if (candidates.Count == 0)
        {
            throw new ArgumentException("at least one upstream is needed", nameof(candidates));
        }
        foreach (var candidate in candidates)
        {
            if (!TryParseEndPoint(candidate, out _))
            {
                throw new FormatException($"'{candidate}' is not HOST:PORT");
            }
        }
        _configured = candidates;
        _store = store;
        _options = options;
        _transport = transport;
        _logger = logger;
    }

    /// <summary>The session connected now (the last one after the run ended); null before the first connects.</summary>
    public UpstreamSession? Current => Volatile.Read(ref _current);

    /// <summary>Completes with the first session that connects (progress views, probes); faults if none ever does.</summary>
    public Task<UpstreamSession> FirstSession => _firstSession.Task;

    /// <summary>Sessions connected so far (1 without a reattach).</summary>
    public int Sessions { get; private set; }

    /// <summary>
    /// Pulls the snapshot to the end, reattaching as needed, and returns its verified manifest. Throws with one clear
    /// line when no candidate answers within the reattach deadline, or when the failure is not an upstream's (the
    /// store, Ctrl+C).
    /// </summary>
    public async Task<SnapshotManifest> RunAsync(CancellationToken ct)
    {
        string? snapshotId = null;
        List<string> hints = [];
        var next = 0;
        try
        {
            while (true)
            {
                var (session, upstream, index) = await ConnectNextAsync(next, snapshotId, hints, ct);
                snapshotId ??= session.Snapshot.SnapshotId;
                hints = [.. session.Offer.Upstreams];
                Publish(session);
                Exception failure;
                try
                {
                    return await session.RunAsync();
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    failure = ex;
                }
                var reason = session.CloseReason ?? SessionFailure.Classify(failure);
                if (IsLie(reason))
                {
                    _liars.Add(upstream);
                }
                var candidates = Candidates(hints).Count;
                // With nothing else to go to (one upstream, no hints), the sink ends as it always did: a supervisor restarts it.
                if (ct.IsCancellationRequested || !IsUpstreams(reason) || candidates == 0 || Candidates(hints).SequenceEqual([upstream]))
                {
                    throw failure;
                }
                Withdraw(session);
                await session.DisposeAsync();
                if (IsLie(reason))
                {
                    ReattachLog.UpstreamTainted(_logger, upstream, reason.ToString(), candidates, _options.ReattachTimeout.TotalSeconds);
                }
                else
                {
                    ReattachLog.UpstreamGone(_logger, upstream, reason.ToString(), candidates, _options.ReattachTimeout.TotalSeconds);
                }
                next = index + 1;
            }
        }
        catch (Exception ex)
        {
            lock (_lock)
            {
                if (_session.Task.IsCompleted)
                {
                    _session = new TaskCompletionSource<UpstreamSession>(TaskCreationOptions.RunContinuationsAsynchronously);
                }
                _session.TrySetException(ex);
                Changed();
            }
            _firstSession.TrySetException(ex);
            throw;
        }
    }

    /// <summary>
    /// Tries the candidates in order from <paramref name="start"/> (wrapping, with <see cref="UpstreamClientOptions.ReattachBackoff"/>
    /// after each full round) until one connects, or the deadline passes.
    /// </summary>
    private async Task<(UpstreamSession Session, string Upstream, int Index)> ConnectNextAsync(int start, string? snapshotId, List<string> hints, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(_options.ReattachTimeout);
        var options = _options.Upstream with { RequiredSnapshotId = snapshotId };
        var tried = new List<string>();
        var attempt = 0;
        for (var round = 0; ; round++)
        {
            var candidates = Candidates(hints);
            for (var i = 0; i < candidates.Count; i++)
            {
                if (_liars.Contains(candidates[(start + i) % candidates.Count]))
                {
                    continue;
                }
                var index = (start + i) % candidates.Count;
                var upstream = candidates[index];
                attempt++;
                if (snapshotId is not null || attempt > 1)
                {
                    ReattachLog.Attempt(_logger, attempt, upstream);
                }
                try
                {
                    var endPoint = await ResolveAsync(upstream, deadline.Token);
                    var session = await UpstreamSession.ConnectAsync(endPoint, _store, options, _transport, _logger, deadline.Token);
                    if (snapshotId is not null)
                    {
                        ReattachLog.Reattached(_logger, upstream, snapshotId, session.Snapshot.PresentChunks, session.Snapshot.TotalChunks);
                    }
                    return (session, upstream, index);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException && !ct.IsCancellationRequested)
                {
                    var reason = deadline.IsCancellationRequested
                        ? CloseReason.Timeout("the reattach deadline passed")
                        : SessionFailure.Classify(ex);
                    // Our own refusal (the store cannot take the offer) is no upstream's fault, and a single upstream
                    // with nothing else to go to fails the sink as it always did.
                    if (!IsUpstreams(reason) || (snapshotId is null && reason is { Kind: CloseKind.Protocol, Code: ProtocolError.OfferRefused })
                        || (snapshotId is null && candidates.Count == 1))
                    {
                        throw;
                    }
                    if (IsLie(reason))
                    {
                        _liars.Add(upstream);
                    }
                    ReattachLog.AttemptFailed(_logger, attempt, upstream, reason.Detail);
                    tried.Add($"{upstream} ({reason.Detail.TrimEnd('.')})");
                    if (deadline.IsCancellationRequested)
                    {
                        throw GiveUp(tried);
                    }
                    if (Candidates(hints).Count == 0)
                    {
                        // Every candidate lied: waiting for the deadline cannot help.
                        throw;
                    }
                }
            }
            start = 0;
            try
            {
                await Task.Delay(_options.ReattachBackoff, deadline.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw GiveUp(tried);
            }
        }
    }

    private TimeoutException GiveUp(List<string> tried) =>
        new($"no upstream answered within {_options.ReattachTimeout.TotalSeconds:F0} s (--reattach-timeout); tried {string.Join(", ", tried.Distinct())}");

    /// <summary>
    /// Whether another upstream may do better: the upstream vanished, stalled or turned us away, or it broke the
    /// protocol (nothing unverified was stored, and another node may be honest). Our own faults (store, Ctrl+C) are not.
    /// </summary>
    /// <summary>The upstream sent what it must not (a hash mismatch, a malformed frame): it is not tried again.</summary>
    private static bool IsLie(CloseReason reason) => reason.Kind is CloseKind.Protocol
        && reason.Code is not (ProtocolError.StoreFailure or ProtocolError.LimitExceeded or ProtocolError.OfferRefused);

    private static bool IsUpstreams(CloseReason reason) => reason.Kind switch
    {
        CloseKind.PeerClosed or CloseKind.Timeout or CloseKind.Refused or CloseKind.PeerError => true,
        CloseKind.Protocol => reason.Code is not (ProtocolError.StoreFailure or ProtocolError.LimitExceeded),
        _ => false,
    };

    /// <summary>
    /// The configured list, then the offer's hints not already in it (unparsable hints skipped with a line), without
    /// the upstreams that broke the protocol.
    /// </summary>
    private List<string> Candidates(List<string> hints)
    {
        var list = new List<string>(_configured.Where(c => !_liars.Contains(c)));
        foreach (var hint in hints)
        {
            if (!TryParseEndPoint(hint, out _))
            {
                if (_badHints.Add(hint))
                {
                    ReattachLog.BadHint(_logger, hint);
                }
                continue;
            }
            if (!list.Contains(hint, StringComparer.OrdinalIgnoreCase) && !_liars.Contains(hint))
            {
                list.Add(hint);
            }
        }
        return list;
    }

    private void Publish(UpstreamSession session)
    {
        lock (_lock)
        {
            Volatile.Write(ref _current, session);
            Sessions++;
            if (!_session.TrySetResult(session))
            {
                _session = new TaskCompletionSource<UpstreamSession>(TaskCreationOptions.RunContinuationsAsynchronously);
                _session.SetResult(session);
            }
            Changed();
        }
        _firstSession.TrySetResult(session);
    }

    private void Withdraw(UpstreamSession session)
    {
        lock (_lock)
        {
            if (_session.Task.IsCompletedSuccessfully && _session.Task.Result == session)
            {
                _session = new TaskCompletionSource<UpstreamSession>(TaskCreationOptions.RunContinuationsAsynchronously);
            }
            Volatile.Write(ref _current, null);
            Changed();
        }
    }

    /// <summary>Wakes readers waiting for the session to change (caller holds the lock).</summary>
    private void Changed()
    {
        var changed = _changed;
        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        changed.TrySetResult();
    }

    /// <summary>
    /// Reads snapshot bytes like <see cref="UpstreamSession.ReadAsync"/>; a read whose session dies waits for the next
    /// one (until the reattach deadline) and is asked again there, so a starting clone sees a slow read, not an error.
    /// </summary>
    public ValueTask<int> ReadAsync(int objectId, long offset, Memory<byte> destination, CancellationToken ct = default) =>
        WithSessionAsync(session => session.ReadAsync(objectId, offset, destination, ct), ct);

    /// <summary>
    /// <see cref="UpstreamSession.EnsurePresentAsync"/> through reattaches (a relay answering a child's demand request):
    /// concurrent requests for a chunk are merged in the session; a session dying under the wait is asked again.
    /// </summary>
    public async ValueTask EnsurePresentAsync(int objectId, long firstIndex, int count, CancellationToken ct = default) =>
        await WithSessionAsync(async session =>
        {
            await session.EnsurePresentAsync(objectId, firstIndex, count, ct);
            return 0;
        }, ct);

    private async ValueTask<T> WithSessionAsync<T>(Func<UpstreamSession, ValueTask<T>> call, CancellationToken ct)
    {
        while (true)
        {
            Task<UpstreamSession> pending;
            lock (_lock)
            {
                pending = _session.Task;
            }
            var session = await pending.WaitAsync(ct);
            try
            {
                return await call(session);
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException && !ct.IsCancellationRequested)
            {
                // The session's lanes died under the read: wait until the loop has withdrawn it (then the next session, or its end).
                await WithdrawnAsync(session, ct);
            }
        }
    }

    private async Task WithdrawnAsync(UpstreamSession session, CancellationToken ct)
    {
        while (true)
        {
            Task<UpstreamSession> pending;
            Task changed;
            lock (_lock)
            {
                pending = _session.Task;
                changed = _changed.Task;
            }
            if (!pending.IsCompletedSuccessfully || pending.Result != session)
            {
                return;
            }
            // The loop withdraws the session right after its RunAsync ends, which follows the lane failure the read saw.
            await changed.WaitAsync(ct);
        }
    }

    public static bool TryParseEndPoint(string text, out EndPoint endPoint)
    {
        endPoint = null!;
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is 0 or > 65535)
        {
            return false;
        }
        var host = text[..colon].Trim('[', ']');
        if (host == "localhost")
        {
            endPoint = new IPEndPoint(IPAddress.Loopback, port);
        }
        else if (IPAddress.TryParse(host, out var address))
        {
            endPoint = new IPEndPoint(address, port);
        }
        else if (Uri.CheckHostName(host) == UriHostNameType.Dns)
        {
            endPoint = new DnsEndPoint(host, port);
        }
        else
        {
            return false;
        }
        return true;
    }

    private static async Task<EndPoint> ResolveAsync(string candidate, CancellationToken ct)
    {
        TryParseEndPoint(candidate, out var endPoint);
        if (endPoint is DnsEndPoint dns)
        {
            var addresses = await Dns.GetHostAddressesAsync(dns.Host, ct);
            return addresses.Length > 0
                ? new IPEndPoint(addresses[0], dns.Port)
                : throw new IOException($"{dns.Host} has no address");
        }
        return endPoint;
    }

    public async ValueTask DisposeAsync()
    {
        if (Volatile.Read(ref _current) is { } session)
        {
            await session.DisposeAsync();
        }
    }
}
