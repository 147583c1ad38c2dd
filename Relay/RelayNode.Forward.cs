using StreamClone.Shared;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Store.Upstream;

namespace StreamClone.Relay;

public sealed partial class RelayNode
{
    private readonly TaskCompletionSource<EncodedStream> _streamReady = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private MulticastFanout? _multicast;
    private readonly Lock _hashLock = new();
    // Hashes of the chunks sent as Data in this relay's log: a Known entry naming one of them is valid for any child.
    private readonly HashSet<ChunkHash> _streamData = [];
    private EncodedStream? _stream;
    // Per object, per chunk: the hash its place must hold, and whether it is known yet (the zero mark is the default
    // hash). 33 bytes per chunk, 0.8% of a 4 KiB-chunked snapshot, which fits the cache bound (the store refused it otherwise).
    private ChunkHash[][] _hashes = [];
    private bool[][] _hashKnown = [];

    /// <summary>The upstream session's taps: it calls them in order (offer, batches 1..N, completion), from one loop.</summary>
    private sealed class Forwarder(RelayNode node) : IUpstreamObserver
    {
        public void OfferReceived(SnapshotOfferMessage offer) => node.OnOffer(offer);

        public ValueTask BatchVerifiedAsync(ChunkBatchMessage header, ReadOnlyMemory<byte> payload, CancellationToken ct) =>
            node.ForwardAsync(header, payload, ct);

        public ValueTask CompletedAsync(SnapshotCompleteMessage completion, CancellationToken ct)
        {
            var stream = node.Stream!;
            if (!stream.IsComplete)
            {
                stream.Complete(completion);
            }
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>
    /// The first offer creates the relay's log, offering children the same snapshot with this relay's upstreams and the
    /// upstream's own hints as reattach hints. A reattach's offer is for the same snapshot (the session requires it).
    /// </summary>
    private void OnOffer(SnapshotOfferMessage offer)
    {
        if (Volatile.Read(ref _stream) is not null)
        {
            return;
        }
        var hints = _options.Upstreams.Concat(offer.Upstreams).Distinct(StringComparer.OrdinalIgnoreCase).Take(WireLimits.MaxUpstreamHints).ToList();
        var ours = new SnapshotOfferMessage
        {
            SnapshotId = offer.SnapshotId,
            CreatedUtc = offer.CreatedUtc,
            Origin = offer.Origin,
            HashAlgorithm = offer.HashAlgorithm,
            Objects = offer.Objects,
            Upstreams = hints,
        };
        var stream = EncodedStream.CreateSpilled(ours, _options.Buffers, NodeRoles.Relay);
        Volatile.Write(ref _stream, stream);
        // Hooked before children can see the offer, so a child asking for multicast in its inventory finds the joiner.
        if (_options.Multicast is { } multicast)
        {
            _multicast = MulticastFanout.Attach(_downstream, stream, multicast, _logger);
        }
        _downstream.SetStream(stream);
        _streamReady.TrySetResult(stream);
        RelayLog.Forwarding(_logger, offer.SnapshotId, offer.Objects.Count, offer.Objects.Sum(o => o.Size), string.Join(",", hints));
    }

    /// <summary>
    /// Each batch goes into the log once it verified and before this relay stores it (children verify again). A batch
    /// already in the log (a reattached upstream starts again at 1) is skipped. Known entries that the upstream sent
    /// because of this relay's inventory (hashes not sent as Data earlier in this log) are turned into Data from the
    /// cache first, so the log is valid for any child.
    /// </summary>
    private async ValueTask ForwardAsync(ChunkBatchMessage header, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var snapshot = await SnapshotAsync(ct);
        var stream = Volatile.Read(ref _stream)!;
        if (header.Sequence <= stream.Count)
        {
            return;
        }
        if (header.Sequence != stream.Count + 1)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OutOfSequence, $"relay log: batch {header.Sequence} where {stream.Count + 1} was due");
        }
        // Every number is checked before it sizes or places anything (the verify stage checks again).
        var obj = BatchLayout.Validate(header, snapshot.Objects);
        var count = header.Kinds.Length;
        var expand = new bool[count];
        var expansions = 0;
        var h = 0;
        lock (_hashLock)
        {
            for (var i = 0; i < count; i++)
            {
                var kind = (ChunkEntryKind)header.Kinds[i];
                var hash = kind == ChunkEntryKind.Zero ? ChunkHash.ZeroMark : ChunkHash.Read(header.Hashes.AsSpan(h++ * ChunkHash.Size, ChunkHash.Size));
                RecordHashLocked(obj.Id, header.FirstIndex + i, hash);
                // In entry order: a Known entry may name a Data entry earlier in this same batch.
                if (kind == ChunkEntryKind.Known && !_streamData.Contains(hash))
                {
                    expand[i] = true;
                    expansions++;
                }
                if (kind == ChunkEntryKind.Data || expand[i])
                {
                    _streamData.Add(hash);
                }
            }
        }
        if (expansions == 0)
        {
            stream.Append(header, payload.Span);
        }
        else
        {
            await AppendExpandedAsync(stream, header, payload, obj, expand, ct);
        }
    }

    /// <summary>Re-encodes a batch with its inventory-made Known entries as Data read (verified) from the cache.</summary>
    private async ValueTask AppendExpandedAsync(EncodedStream stream, ChunkBatchMessage header, ReadOnlyMemory<byte> payload, ObjectInfo obj, bool[] expand, CancellationToken ct)
    {
        var count = header.Kinds.Length;
        var raw = _options.Buffers.Rent((int)BatchFilter.InputBytes(obj, header.FirstIndex, count));
        var batch = new WorkBatch
        {
            ObjectId = obj.Id,
            FirstIndex = header.FirstIndex,
            Count = count,
            ChunkSize = obj.ChunkSize,
            Raw = raw,
            Kinds = new ChunkEntryKind[count],
            Hashes = new ChunkHash[count],
        };
        try
        {
            // The Data chunks lie back to back in the decompressed payload; each goes to its place in the raw batch.
            using (var data = _options.Buffers.Rent(header.RawLength))
            {
                BatchCodec.Decompress(header.Codec, payload.Span, data.Span);
                int at = 0, h = 0;
                for (var i = 0; i < count; i++)
                {
                    var kind = (ChunkEntryKind)header.Kinds[i];
                    batch.Kinds[i] = expand[i] ? ChunkEntryKind.Data : kind;
                    batch.Hashes[i] = kind == ChunkEntryKind.Zero ? ChunkHash.ZeroMark : ChunkHash.Read(header.Hashes.AsSpan(h++ * ChunkHash.Size, ChunkHash.Size));
                    if (kind == ChunkEntryKind.Data)
                    {
                        var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, header.FirstIndex + i);
                        data.Span.Slice(at, length).CopyTo(raw.Span[(i * obj.ChunkSize)..]);
                        at += length;
                    }
                }
            }
            for (var i = 0; i < count; i++)
            {
                if (expand[i])
                {
                    var index = header.FirstIndex + i;
                    var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index);
                    await ReadCachedChunkAsync(obj.Id, index, batch.Hashes[i], raw.Memory.Slice(i * obj.ChunkSize, length), ct);
                }
            }
        }
        catch
        {
            raw.Dispose();
            throw;
        }
        // Encode takes the raw buffer (disposes it, also when it throws).
        using var encoded = BatchEncoder.Encode(batch, _options.CompressionLevel, _options.Buffers);
        encoded.Header.Sequence = header.Sequence;
        stream.Append(encoded.Header, encoded.Payload.Span);
    }

    private void InitializeHashes(IReadOnlyList<ObjectInfo> objects)
    {
        lock (_hashLock)
        {
            if (_hashes.Length == 0)
            {
                _hashes = [.. objects.Select(o => new ChunkHash[ChunkMath.ChunkCount(o.Size, o.ChunkSize)])];
                _hashKnown = [.. objects.Select(o => new bool[ChunkMath.ChunkCount(o.Size, o.ChunkSize)])];
            }
        }
    }

    private bool RecordHash(int objectId, long index, ChunkHash hash)
    {
        lock (_hashLock)
        {
            return RecordHashLocked(objectId, index, hash);
        }
    }

    private bool RecordHashLocked(int objectId, long index, ChunkHash hash)
    {
        if ((uint)objectId >= (uint)_hashes.Length || (ulong)index >= (ulong)_hashes[objectId].LongLength)
        {
            return false;
        }
        _hashes[objectId][index] = hash;
        _hashKnown[objectId][index] = true;
        return true;
    }

    /// <summary>The hash a place must hold, if the log or the journal named it.</summary>
    private bool TryGetHash(int objectId, long index, out ChunkHash hash)
    {
        lock (_hashLock)
        {
            var known = (uint)objectId < (uint)_hashes.Length && (ulong)index < (ulong)_hashes[objectId].LongLength && _hashKnown[objectId][index];
            hash = known ? _hashes[objectId][index] : default;
            return known;
        }
    }
}
