using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Multicast;
using StreamClone.Shared.Protocol;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Shared.Fanout;

/// <summary>Where and how fast a node (source or relay) multicasts its encoded stream; each default with its reason.</summary>
public sealed class MulticastFanoutOptions
{
    /// <summary>IPv4 multicast group (224.0.0.0/4).</summary>
    public IPAddress Group { get; set; } = IPAddress.None;

    public int Port { get; set; }

    /// <summary>The interface on the receivers' segment, by name.</summary>
    public string Interface { get; set; } = "";

    /// <summary>Operator floor of the send rate, bytes/s (see <see cref="MulticastSenderOptions.MinRateBytesPerSecond"/>).</summary>
    public long MinRateBytesPerSecond { get; set; } = 1_000_000;

    /// <summary>Operator ceiling of the send rate, bytes/s (see <see cref="MulticastSenderOptions.MaxRateBytesPerSecond"/>).</summary>
    public long MaxRateBytesPerSecond { get; set; } = 118_000_000;

    /// <summary>Batches behind the send head at which a receiver is moved to its TCP lane (<see cref="MulticastSenderOptions.MaxLagBatches"/>).</summary>
    public long MaxLagBatches { get; set; } = 64;

    /// <summary>
    /// Receivers to wait for before the first datagram (uftp waits for its clients the same way): children join a few
    /// moments apart, and one that joins after the sender started takes the batches already multicast over TCP. 1:
    /// start with the first.
    /// </summary>
    public int StartAfterReceivers { get; set; } = 1;

    /// <summary>Longest wait, from the first join, for <see cref="StartAfterReceivers"/>: the joined ones are idle meanwhile. 10 s.</summary>
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The multicast engine's settings, from these.</summary>
    public MulticastSenderOptions ToSenderOptions()
    {
        if (Group.AddressFamily != AddressFamily.InterNetwork || (Group.GetAddressBytes()[0] & 0xF0) != 0xE0)
        {
            throw new ArgumentException($"multicast group {Group} is not an IPv4 multicast address (224.0.0.0/4)");
        }
        if (Port is < 1 or > 65535)
        {
            throw new ArgumentException($"multicast port {Port} is out of range");
        }
        if (string.IsNullOrEmpty(Interface))
        {
            throw new ArgumentException("multicast needs an interface (--interface)");
        }
        if (StartAfterReceivers < 1 || StartTimeout < TimeSpan.Zero)
        {
            throw new ArgumentException($"multicast start after {StartAfterReceivers} receivers within {StartTimeout}: not a valid wait");
        }
        if (MinRateBytesPerSecond < 1 || MaxRateBytesPerSecond < MinRateBytesPerSecond)
        {
            throw new ArgumentException($"multicast rate bounds [{MinRateBytesPerSecond}, {MaxRateBytesPerSecond}] are not a range");
        }
        var defaults = new MulticastSenderOptions { Group = new IPEndPoint(Group, Port), InterfaceName = Interface };
        return defaults with
        {
            MinRateBytesPerSecond = MinRateBytesPerSecond,
            MaxRateBytesPerSecond = MaxRateBytesPerSecond,
            InitialRateBytesPerSecond = Math.Clamp(defaults.InitialRateBytesPerSecond, MinRateBytesPerSecond, MaxRateBytesPerSecond),
            MaxLagBatches = MaxLagBatches,
        };
    }
}

/// <summary>
/// Multicasts a node's <see cref="EncodedStream"/> (source or relay) to the children of its
/// <see cref="DownstreamServer"/> that ask for it on their last inventory frame, while each keeps its TCP bulk lane
/// for control: the join (group, per-snapshot AES-GCM key, first sequence) goes there, over mutual TLS; batches
/// before the first sequence go there too (a late joiner); the child's reports and NACKs come back there; a child
/// that lags (or leaves) is told MulticastLeave and its TCP lane resumes from its next sequence; completion goes
/// there. NACKs of batches not sent are ignored and counted.
/// </summary>
public sealed class MulticastFanout : IAsyncDisposable
{
    private readonly DownstreamServer _server;
    private readonly EncodedStream _stream;
    private readonly ILogger _logger;
    private readonly MulticastSender _sender;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<string, DownstreamSession> _receivers = new(StringComparer.Ordinal);
    private readonly MulticastFanoutOptions _options;
    private readonly TaskCompletionSource _start = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _run;
    private long _ignoredNacks;
    private long _leaves;
    private long _joins;

    private MulticastFanout(DownstreamServer server, EncodedStream stream, MulticastFanoutOptions options, ILogger logger)
    {
        _server = server;
        _stream = stream;
        _logger = logger;
        _options = options;
        // Random ids: a restarted node's datagrams (or another node's on the same group) are foreign to receivers
        // of this one, not forged. The key itself is fresh per snapshot (MulticastKey.Generate, a CSPRNG).
        _sender = new MulticastSender(new EncodedStreamBatches(stream), RandomId(), RandomId(), options.ToSenderOptions(), OnLagging);
        _run = RunAsync();
    }

    /// <summary>
    /// Starts multicasting <paramref name="stream"/> (the one <paramref name="server"/> serves) and takes over the
    /// server's <see cref="DownstreamServer.ControlFrames"/> and <see cref="DownstreamServer.MulticastJoiner"/>. The
    /// socket is opened here, in the calling thread's network namespace. Throws <see cref="ArgumentException"/> for
    /// bad options, <see cref="SocketException"/> when the interface cannot send multicast.
    /// </summary>
    public static MulticastFanout Attach(DownstreamServer server, EncodedStream stream, MulticastFanoutOptions options, ILogger logger)
    {
        var fanout = new MulticastFanout(server, stream, options, logger);
        server.ControlFrames = fanout.OnControlFrameAsync;
        server.MulticastJoiner = fanout.Join;
        server.SessionEnded += fanout.OnSessionEnded;
        MulticastFanoutLog.Started(logger, options.Group.ToString(), options.Port, options.Interface);
        return fanout;
    }

    /// <summary>The engine (rate, GRTT, datagrams and repairs sent).</summary>
    public MulticastSender Sender => _sender;

    /// <summary>NACKed batches that were never sent (or do not exist): ignored.</summary>
    public long IgnoredNacks => Interlocked.Read(ref _ignoredNacks);

    /// <summary>Children moved from multicast back to their TCP lane.</summary>
    public long Leaves => Interlocked.Read(ref _leaves);

    /// <summary>Children that joined.</summary>
    public long Joins => Interlocked.Read(ref _joins);

    private static uint RandomId() => BitConverter.ToUInt32(RandomNumberGenerator.GetBytes(4));

    private async Task RunAsync()
    {
        try
        {
            // Nothing goes out before a receiver is there to take it (else the stream would go to nobody, then again
            // over TCP); then from batch 1, which every receiver joined so far takes from multicast.
            await _start.Task.WaitAsync(_stop.Token);
            await Task.Run(() => _sender.RunAsync(1, _stop.Token));
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The stream failed or the socket did: every receiver leaves multicast and takes the rest over TCP
            // (where the stream's own failure, if that was it, reaches them too).
            MulticastFanoutLog.SenderFailed(_logger, ex.Message);
            foreach (var session in _receivers.Values)
            {
                await LeaveAsync(session, session.NextSequence, MulticastLeaveReason.SenderStopped, ex.Message);
            }
        }
    }

    private MulticastJoinMessage? Join(DownstreamSession session)
    {
        if (_stop.IsCancellationRequested || _run.IsCompleted)
        {
            return null;
        }
        // From the batch after the send head on by multicast (1 before the sender started); the TCP lane brings the ones before.
        var join = _sender.CreateJoin(Math.Max(session.NextSequence, _start.Task.IsCompleted ? _sender.SendHead + 1 : 1));
        _receivers[session.SessionId] = session;
        var joined = Interlocked.Increment(ref _joins);
        if (joined >= _options.StartAfterReceivers)
        {
            _start.TrySetResult();
        }
        else if (joined == 1)
        {
            // The others may never come: start anyway after the timeout (the policy's timer, not a wait for an event).
            _ = Task.Delay(_options.StartTimeout, _stop.Token).ContinueWith(_ => _start.TrySetResult(), CancellationToken.None,
                TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
        }
        MulticastFanoutLog.Joined(_logger, session.SessionId, session.Peer.ToString(), join.FirstSequence);
        return join;
    }

    private async ValueTask<bool> OnControlFrameAsync(DownstreamSession session, Frame frame)
    {
        switch (frame.Type)
        {
            case FrameType.MulticastReport:
                var report = frame.DecodeHeader<MulticastReportMessage>();
                if (!_receivers.ContainsKey(session.SessionId))
                {
                    // Sent before our leave reached it: it speaks for a path this child no longer has.
                    return true;
                }
                var head = _sender.SendHead;
                var ignored = report.Nacks.Count(n => n.Sequence > head);
                if (ignored > 0)
                {
                    Interlocked.Add(ref _ignoredNacks, ignored);
                    MulticastFanoutLog.NacksIgnored(_logger, session.SessionId, ignored, head);
                }
                // Problem() is checked there: a report out of range ends this child's session with one line.
                _sender.OnReport(session.SessionId, report);
                if (report.Nacks.Count > 0)
                {
                    StreamCloneMetrics.RecordNacks(_server.MetricRole, NackedFragments(report.Nacks));
                }
                return true;
            case FrameType.MulticastLeave:
                var leave = frame.DecodeHeader<MulticastLeaveMessage>();
                if (leave.Problem() is { } problem)
                {
                    throw new ProtocolViolationException(ProtocolError.MalformedHeader, problem);
                }
                if (_receivers.TryRemove(session.SessionId, out _))
                {
                    _sender.RemoveReceiver(session.SessionId);
                    session.ResumeOverTcp(leave.ResumeFromSequence);
                    Interlocked.Increment(ref _leaves);
                    MulticastFanoutLog.Left(_logger, session.SessionId, leave.ResumeFromSequence, leave.Detail);
                }
                return true;
            default:
                return ThrowHelper.ThrowProtocol<bool>(ProtocolError.UnexpectedFrame, $"unexpected {frame.Type} on the bulk lane while streaming");
        }
    }

    /// <summary>Fragments a report asks for: the bits of each bitmap, or one for a whole batch (its size unknown to the receiver).</summary>
    private static long NackedFragments(List<MulticastNack> nacks)
    {
        long count = 0;
        foreach (var nack in nacks)
        {
            var bits = 0;
            foreach (var b in nack.Missing)
            {
                bits += System.Numerics.BitOperations.PopCount(b);
            }
            count += Math.Max(1, bits);
        }
        return count;
    }

    /// <summary>The engine's lag rule fired (inside OnReport, on that child's receive loop): move it to TCP.</summary>
    private void OnLagging(string receiver, long nextSequence)
    {
        if (_receivers.TryGetValue(receiver, out var session))
        {
            _ = LeaveAsync(session, nextSequence, MulticastLeaveReason.Lagging,
                $"more than the allowed batches behind the multicast head; the rest comes over TCP from batch {nextSequence}");
        }
    }

    private async Task LeaveAsync(DownstreamSession session, long resumeFrom, MulticastLeaveReason reason, string detail)
    {
        if (!_receivers.TryRemove(session.SessionId, out _))
        {
            return;
        }
        _sender.RemoveReceiver(session.SessionId);
        Interlocked.Increment(ref _leaves);
        var resume = Math.Max(1, resumeFrom);
        MulticastFanoutLog.Left(_logger, session.SessionId, resume, detail);
        try
        {
            await session.SendControlAsync(FrameType.MulticastLeave, new MulticastLeaveMessage
            {
                ResumeFromSequence = resume,
                Reason = reason,
                Detail = detail.Length <= WireLimits.MaxMulticastLeaveReasonLength ? detail : detail[..WireLimits.MaxMulticastLeaveReasonLength],
            }, _stop.Token);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The lane is gone: the session ends by itself, with its own reason.
        }
        // After the leave went: a batch the TCP lane sends now cannot overtake it (and would do no harm if it did).
        session.ResumeOverTcp(resume);
    }

    private void OnSessionEnded(DownstreamSessionStats stats)
    {
        if (_receivers.TryRemove(stats.SessionId, out _))
        {
            _sender.RemoveReceiver(stats.SessionId);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _server.SessionEnded -= OnSessionEnded;
        // Children arriving from now on stay on TCP; reports of joined ones still reach the (stopped) engine harmlessly.
        _server.MulticastJoiner = null;
        await _stop.CancelAsync();
        await _run;
        _sender.Dispose();
        _stop.Dispose();
    }

    /// <summary>The encoded stream as the engine reads it: each batch's stored header and payload, as one run of bytes.</summary>
    private sealed class EncodedStreamBatches(EncodedStream stream) : IMulticastBatchSource
    {
        public long Count => stream.Count;

        public bool IsComplete => stream.IsComplete;

        public ValueTask<bool> WaitForBatchAsync(long sequence, CancellationToken cancellationToken) =>
            stream.WaitForBatchAsync(sequence, cancellationToken);

        public async ValueTask<IMulticastBatchLease> ReadBatchAsync(long sequence, CancellationToken cancellationToken) =>
            new Lease(await stream.ReadRawAsync(sequence, cancellationToken)
                ?? throw new InvalidOperationException($"batch {sequence} is not in the encoded stream"));

        private sealed class Lease(StoredBatchBytes batch) : IMulticastBatchLease
        {
            public ReadOnlyMemory<byte> Bytes => batch.Bytes.Memory;

            public void Dispose() => batch.Dispose();
        }
    }
}

/// <summary>Log events of the multicast fan-out: 4150-4159 of Shared's range.</summary>
internal static partial class MulticastFanoutLog
{
    [LoggerMessage(4150, LogLevel.Information, "Multicasting the encoded stream to {Group}:{Port} on {Interface}")]
    public static partial void Started(ILogger logger, string group, int port, string @interface);

    [LoggerMessage(4151, LogLevel.Information, "Session {SessionId} ({Peer}) joined multicast from batch {FirstSequence}")]
    public static partial void Joined(ILogger logger, string sessionId, string peer, long firstSequence);

    [LoggerMessage(4152, LogLevel.Warning, "Session {SessionId} left multicast, TCP from batch {Resume}: {Detail}")]
    public static partial void Left(ILogger logger, string sessionId, long resume, string detail);

    [LoggerMessage(4153, LogLevel.Warning, "Session {SessionId}: {Count} NACKs of batches never sent (send head {Head}) ignored")]
    public static partial void NacksIgnored(ILogger logger, string sessionId, int count, long head);

    [LoggerMessage(4154, LogLevel.Error, "Multicast sender stopped: {Reason}; receivers continue over TCP")]
    public static partial void SenderFailed(ILogger logger, string reason);
}
