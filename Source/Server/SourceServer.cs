using System.Net;
using System.Threading.Tasks.Dataflow;
using Microsoft.Extensions.Logging;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source.Inputs;
using StreamClone.Source.Pipeline;

namespace StreamClone.Source.Server;

/// <summary>
/// Serves one snapshot to any number of sinks (or relays), encoding it once: one <see cref="SourcePipeline"/>
/// classifies, hashes and compresses the snapshot into an <see cref="EncodedStream"/> (spilled to a private
/// temporary directory), and a <see cref="DownstreamServer"/> gives every session the stream's batches at its own
/// pace, minus what its sink holds already; demand requests are read from the input itself.
/// <para>
/// The graph starts when the server starts serving (<see cref="RunAsync"/> or the first <see cref="ServeAsync"/>),
/// not when the first sink streams: the source is started to be pulled from, a live VM's snapshot copy is
/// released the sooner the read is done, and the first sink then finds batches ready instead of waiting for
/// the graph to fill. The cost is the compressed snapshot on disk for the server's lifetime (less than the
/// image, and unlinked: it vanishes with the process).
/// </para>
/// </summary>
public sealed class SourceServer : IAsyncDisposable
{
    private readonly ISnapshotInput _input;
    private readonly SourceOptions _options;
    private readonly ILogger _logger;
    private readonly EncodedStream _stream;
    private readonly DownstreamServer _downstream;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _startLock = new();
    private SourcePipeline? _pipeline;
    private Task? _encoding;

    public SourceServer(ISnapshotInput input, SourceOptions options, TransportOptions transport, ILogger logger)
    {
        options.Validate();
        _input = input;
        _options = options;
        _logger = logger;
        _stream = EncodedStream.CreateSpilled(input.Offer, options.Buffers, NodeRoles.Source);
        _downstream = new DownstreamServer(options, transport, NodeRoles.Source, MetricRole.Source, new InputDemandReader(input), logger, _stream);
    }

    /// <summary>
    /// Raised when a session that took its sink's inventory and began streaming ends, successfully
    /// or not (see <see cref="DownstreamSessionStats.Completed"/>). Connections refused before that
    /// (a bad or silent handshake, too many sessions) are logged, not reported here.
    /// </summary>
    public event Action<DownstreamSessionStats>? SessionEnded
    {
        add => _downstream.SessionEnded += value;
        remove => _downstream.SessionEnded -= value;
    }

    /// <summary>Sessions currently running (for progress displays).</summary>
    public IEnumerable<DownstreamSession> ActiveSessions => _downstream.ActiveSessions;

    /// <summary>The snapshot's encoded stream, which every session reads.</summary>
    public EncodedStream Stream => _stream;

    /// <summary>The server the sessions run in (a multicast fan-out attaches to it).</summary>
    public DownstreamServer Downstream => _downstream;

    /// <summary>Batches the graph classified and encoded: each batch of the snapshot once, however many sessions read it.</summary>
    public long BatchesEncoded => Volatile.Read(ref _pipeline)?.BatchesEncoded ?? 0;

    public IPEndPoint Listen(IPEndPoint endPoint)
    {
        var bound = _downstream.Listen(endPoint);
        SourceLog.Listening(_logger, bound.ToString(), _input.Offer.SnapshotId, _input.Offer.Objects.Count, _input.Offer.Objects.Sum(o => o.Size));
        return bound;
    }

    public async Task RunAsync(CancellationToken ct)
    {
        StartEncoding();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _stop.Token);
        await _downstream.RunAsync(linked.Token);
    }

    /// <summary>
    /// Serves one connection that did not come through the listener (an in-memory pipe in session tests):
    /// the same handshake, pairing and sessions. The caller owns (disposes) it.
    /// </summary>
    public Task ServeAsync(FrameConnection connection, CancellationToken ct)
    {
        StartEncoding();
        return _downstream.ServeAsync(connection, ct);
    }

    private void StartEncoding()
    {
        lock (_startLock)
        {
            _encoding ??= Task.Run(() => EncodeAsync(_stop.Token));
        }
    }

    /// <summary>The one bulk pass: the graph's batches appended to the stream, then its completion (or its failure, which every session tells its sink).</summary>
    private async Task EncodeAsync(CancellationToken ct)
    {
        var buffers = new BatchBufferScope(_options.Buffers);
        var pipeline = new SourcePipeline(_input, _options, buffers);
        Volatile.Write(ref _pipeline, pipeline);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var run = pipeline.RunAsync(failed.Token);
        var append = AppendAsync(pipeline.Output, failed.Token);
        try
        {
            // Whichever fails first stops the other: a read error ends appending, a full disk ends reading.
            await Task.WhenAny(run, append);
            if (run.IsFaulted || append.IsFaulted)
            {
                await failed.CancelAsync();
            }
            await Task.WhenAll(run, append);
            _stream.Complete(new SnapshotCompleteMessage { RootHashes = pipeline.RootHashes, ChunksSent = 0 });
        }
        catch (Exception ex)
        {
            var cause = FailureReport.FirstCause(ex);
            _stream.Fail(cause is OperationCanceledException && ct.IsCancellationRequested
                ? CloseReason.LocalShutdown("source shutting down")
                : CloseReason.Fault(ProtocolError.IncompleteSnapshot, $"the source cannot deliver snapshot {_input.Offer.SnapshotId}: {cause.Message}"));
        }
        finally
        {
            await Task.WhenAll(run, append).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            // Both have finished: what a faulted graph dropped goes back to the pool.
            buffers.ReturnAbandoned();
        }
    }

    private async Task AppendAsync(BufferBlock<Shared.Chunking.EncodedBatch> output, CancellationToken ct)
    {
        try
        {
            while (await output.OutputAvailableAsync(ct))
            {
                while (output.TryReceive(out var batch))
                {
                    using (batch)
                    {
                        _stream.Append(batch.Header, batch.Payload.Span);
                    }
                }
            }
            // Rethrows the graph's fault, if any.
            await output.Completion;
        }
        finally
        {
            // Drop what the graph still holds so its pooled buffers are not pinned.
            while (output.TryReceive(out var leftover))
            {
                leftover.Dispose();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _downstream.DisposeAsync();
        Task? encoding;
        lock (_startLock)
        {
            encoding = _encoding;
            // Nothing starts after this.
            _encoding = Task.CompletedTask;
        }
        if (encoding is not null)
        {
            await encoding.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
        _stream.Dispose();
        _stop.Dispose();
    }
}
