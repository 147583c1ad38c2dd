using System.Net.Sockets;
using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Multicast;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Store.Upstream;

/// <summary>
/// The multicast path beside the TCP bulk lane (<see cref="UpstreamOptions.MulticastInterface"/>): the session asks
/// for it on its last inventory frame; on MulticastJoin (over the mutual-TLS bulk lane: group, key, first sequence) a
/// <see cref="MulticastReceiver"/> joins the group and each batch it reassembles goes into the same sequence
/// assembler, verify and store as the lane's (decrypted bytes are as untrusted as TCP's: every chunk is hashed); its
/// reports and NACKs go back on the bulk lane. On MulticastLeave, a dead receiver, or a batch the reorder window
/// cannot hold, multicast ends and the TCP lane brings the rest from the next sequence.
/// </summary>
public sealed partial class UpstreamSession
{
    private const int MulticastNone = 0, MulticastJoined = 1, MulticastEnded = 2;

    private readonly Lock _multicastLock = new();
    private int _multicastState;
    private MulticastReceiver? _multicastReceiver;
    private CancellationTokenSource? _multicastStop;
    private Task _multicastRun = Task.CompletedTask;

    /// <summary>Batches this session took from multicast (reassembled and passed on; duplicates included).</summary>
    public long MulticastBatches => Interlocked.Read(ref _multicastBatches);

    private long _multicastBatches;

    /// <summary>The multicast receiver while joined (its drop counters), else null.</summary>
    public MulticastReceiver? MulticastReceiver
    {
        get { lock (_multicastLock) { return _multicastReceiver; } }
    }

    /// <summary>True once multicast ended for this session (a leave either way) after a join.</summary>
    public bool LeftMulticast => Volatile.Read(ref _multicastState) == MulticastEnded;

    private bool WantsMulticast => _options.MulticastInterface is not null;

    /// <summary>MulticastJoin and MulticastLeave from the upstream on the bulk lane (only when this session asked).</summary>
    private async ValueTask OnMulticastFrameAsync(Frame frame, CancellationToken ct)
    {
        switch (frame.Type)
        {
            case FrameType.MulticastJoin:
                var join = frame.DecodeHeader<MulticastJoinMessage>();
                if (join.Problem() is { } problem)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, problem);
                }
                if (Interlocked.CompareExchange(ref _multicastState, MulticastJoined, MulticastNone) != MulticastNone)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, "bulk lane: a second MulticastJoin");
                }
                await OpenMulticastAsync(join, ct);
                return;
            case FrameType.MulticastLeave:
                var leave = frame.DecodeHeader<MulticastLeaveMessage>();
                if (leave.Problem() is { } leaveProblem)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, leaveProblem);
                }
                if (Interlocked.CompareExchange(ref _multicastState, MulticastEnded, MulticastJoined) == MulticastJoined)
                {
                    UpstreamLog.MulticastLeft(_logger, SessionId, leave.ResumeFromSequence, leave.Detail);
                    StopMulticastReceiver();
                }
                return;
        }
    }

    private async Task OpenMulticastAsync(MulticastJoinMessage join, CancellationToken ct)
    {
        var options = new MulticastReceiverOptions
        {
            InterfaceName = _options.MulticastInterface!,
            Role = _options.Role == NodeRoles.Relay ? MetricRole.Relay : MetricRole.Sink,
        };
        MulticastReceiver receiver;
        try
        {
            receiver = MulticastReceiver.Open(join, options, OnMulticastBatchAsync, SendMulticastReportAsync);
        }
        catch (Exception ex) when (ex is SocketException or ArgumentException)
        {
            await LeaveMulticastAsync($"cannot join {join.GroupAddress}:{join.Port} on {options.InterfaceName}: {ex.Message}", ct);
            return;
        }
        var stop = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        lock (_multicastLock)
        {
            _multicastReceiver = receiver;
            _multicastStop = stop;
        }
        UpstreamLog.MulticastJoined(_logger, SessionId, join.GroupAddress, join.Port, options.InterfaceName, join.FirstSequence);
        _multicastRun = Task.Run(async () =>
        {
            try
            {
                await receiver.RunAsync(stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // A dead receiver (its socket, a malformed batch from the sender): the TCP lane brings the rest.
                await LeaveMulticastAsync(Sentence(ex.Message), _stop.Token).AsTask().ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
            finally
            {
                UpstreamLog.MulticastSummary(_logger, SessionId, receiver.DatagramsAccepted, receiver.DatagramsLost,
                    string.Join(", ", Enum.GetValues<DatagramDropReason>().Select(r => $"{r.ToString().ToLowerInvariant()} {receiver.Dropped(r)}")));
                receiver.Dispose();
            }
        }, CancellationToken.None);
    }

    /// <summary>One reassembled batch (stored header + payload, decrypted but untrusted) into the assembler.</summary>
    private async ValueTask OnMulticastBatchAsync(ReassembledBatch batch, CancellationToken ct)
    {
        using (batch)
        {
            ChunkBatchMessage header;
            int headerLength;
            try
            {
                header = MessagePackSerializer.Deserialize<ChunkBatchMessage>(batch.Bytes, MessagePackDefaults.Options, out headerLength, ct);
            }
            catch (MessagePackSerializationException ex)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, $"multicast batch {batch.Sequence}: header does not decode: {ex.Message}");
                return;
            }
            if (header.Sequence != batch.Sequence)
            {
                ThrowHelper.ThrowProtocol(ProtocolError.OutOfSequence, $"multicast batch {batch.Sequence} carries the header of batch {header.Sequence}");
            }
            await _assemblerReady.Task.WaitAsync(ct);
            var payload = batch.Bytes[headerLength..];
            var copy = _bulkBuffers!.Rent(payload.Length);
            payload.Span.CopyTo(copy.Span);
            Interlocked.Increment(ref _multicastBatches);
            var outcome = await _assembler!.OfferAsync(header.Sequence, new ReceivedBatch { Header = header, Payload = copy }, ct);
            if (outcome == SequenceOutcome.BeyondWindow)
            {
                // The TCP lane is behind by more than the window holds: multicast would only lose more. TCP brings the rest.
                await LeaveMulticastAsync($"batch {header.Sequence} is beyond the reorder window", ct);
            }
        }
    }

    private async ValueTask SendMulticastReportAsync(MulticastReportMessage report, CancellationToken ct) =>
        await _bulk.SendAsync(FrameType.MulticastReport, report, ReadOnlyMemory<byte>.Empty, ct);

    /// <summary>This side ends multicast: the upstream is told where the TCP lane must resume.</summary>
    private async ValueTask LeaveMulticastAsync(string detail, CancellationToken ct)
    {
        if (Interlocked.CompareExchange(ref _multicastState, MulticastEnded, MulticastJoined) != MulticastJoined)
        {
            return;
        }
        var resume = _assembler?.NextSequence ?? 1;
        UpstreamLog.MulticastLeft(_logger, SessionId, resume, detail);
        StopMulticastReceiver();
        await _bulk.SendAsync(FrameType.MulticastLeave, new MulticastLeaveMessage
        {
            ResumeFromSequence = resume,
            Reason = MulticastLeaveReason.ReceiverLeft,
            Detail = detail.Length <= WireLimits.MaxMulticastLeaveReasonLength ? detail : detail[..WireLimits.MaxMulticastLeaveReasonLength],
        }, ReadOnlyMemory<byte>.Empty, ct);
    }

    /// <summary>Stops the receive loop (not awaited: this may run on it); its task disposes the receiver.</summary>
    private void StopMulticastReceiver()
    {
        lock (_multicastLock)
        {
            _multicastReceiver = null;
            try
            {
                _multicastStop?.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>At the session's end: the receiver stopped and its loop awaited.</summary>
    private async Task StopMulticastAsync()
    {
        StopMulticastReceiver();
        await _multicastRun.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        lock (_multicastLock)
        {
            _multicastStop?.Dispose();
            _multicastStop = null;
        }
    }
}
