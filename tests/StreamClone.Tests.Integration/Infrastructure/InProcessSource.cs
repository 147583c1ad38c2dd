using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Fanout;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>
/// A source server running in the test process on a loopback port, and the sessions it reported ended:
/// tests await <see cref="EndedAsync"/> (an event, never a poll) and read <see cref="Ended"/>.
/// </summary>
internal sealed class InProcessSource : IAsyncDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _serving;
    private readonly List<DownstreamSessionStats> _ended = [];
    private readonly List<(int Count, TaskCompletionSource Reached)> _waiters = [];

    public InProcessSource(ISnapshotInput input, SourceOptions options, TransportOptions transport)
    {
        Server = new SourceServer(input, options, transport, NullLogger.Instance);
        Server.SessionEnded += OnEnded;
        EndPoint = Server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        _serving = Server.RunAsync(_stop.Token);
    }

    public SourceServer Server { get; }

    public IPEndPoint EndPoint { get; }

    public IReadOnlyList<DownstreamSessionStats> Ended
    {
        get
        {
            lock (_ended)
            {
                return [.. _ended];
            }
        }
    }

    /// <summary>Completes once <paramref name="count"/> sessions have ended (bounded by a two-minute guard).</summary>
    public Task EndedAsync(int count)
    {
        lock (_ended)
        {
            var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_ended.Count >= count)
            {
                reached.SetResult();
            }
            else
            {
                _waiters.Add((count, reached));
            }
            return reached.Task.WaitAsync(Guard, TestContext.Current.CancellationToken);
        }
    }

    private void OnEnded(DownstreamSessionStats stats)
    {
        lock (_ended)
        {
            _ended.Add(stats);
            foreach (var (count, reached) in _waiters.Where(w => w.Count <= _ended.Count))
            {
                reached.TrySetResult();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _serving;
        await Server.DisposeAsync();
        _stop.Dispose();
    }
}
