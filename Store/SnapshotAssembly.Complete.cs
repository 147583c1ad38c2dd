using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Store;

public sealed partial class SnapshotAssembly
{
    /// <summary>
    /// Seals the snapshot: every chunk must be present (else <see cref="ProtocolError.IncompleteSnapshot"/>),
    /// each object's root hash (BLAKE3 over its chunk-hash list, see <see cref="ManifestObject.ComputeRootHash"/>)
    /// must equal <paramref name="rootHashes"/>[i] by offer position (else <see cref="ProtocolError.RootHashMismatch"/>).
    /// Then everything is flushed and the manifest written atomically. Calling it again on a complete
    /// snapshot re-checks the roots and returns the same manifest.
    /// </summary>
    public async ValueTask<SnapshotManifest> CompleteAsync(IReadOnlyList<byte[]> rootHashes, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(rootHashes);
        ThrowIfClosed();
        ThrowIfReadOnly();
        foreach (var obj in _objects)
        {
            if (obj.PresentChunks != obj.ChunkCount)
            {
                ThrowIncomplete(obj);
            }
        }
        if (rootHashes.Count != _objects.Length)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.RootHashMismatch,
                $"snapshot {SnapshotId} has {_objects.Length} objects; {rootHashes.Count} root hashes were sent");
        }

        await FlushAsync(ct);
        await _completeGate.WaitAsync(ct);
        try
        {
            ThrowIfClosed();
            // Hashes come from the journal: keeping 32 bytes a chunk in memory only for this moment
            // would double the store's footprint. After the flush above it covers every place.
            var manifest = BuildManifest();
            for (var i = 0; i < _objects.Length; i++)
            {
                var actual = manifest.Objects[i].ComputeRootHash();
                var expected = rootHashes[i];
                if (expected is not { Length: ChunkHash.Size } || ChunkHash.Read(expected) != actual)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.RootHashMismatch,
                        $"snapshot {SnapshotId} object {_objects[i].Info.Id}: stored chunks give root {actual}, the source sent " +
                        (expected is null ? "nothing" : Convert.ToHexStringLower(expected)));
                }
            }
            if (!_isComplete)
            {
                StoreIO.WriteAtomically(Path.Combine(DirectoryPath, ManifestFileName), manifest.SerializeTo);
                _isComplete = true;
                StoreLog.SnapshotCompleted(_store.Logger, SnapshotId, TotalChunks);
            }
            return manifest;
        }
        finally
        {
            _completeGate.Release();
        }
    }

    /// <summary>The manifest as written by <see cref="CompleteAsync"/>; null until the snapshot is complete.</summary>
    public SnapshotManifest? ReadManifest()
    {
        var path = Path.Combine(DirectoryPath, ManifestFileName);
        if (!File.Exists(path))
        {
            return null;
        }
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return SnapshotManifest.Deserialize(stream);
    }

    /// <summary>True when the manifest exists (set once the root hashes matched); <see cref="IsComplete"/> also wants every chunk present.</summary>
    private bool HasCompleteManifest()
    {
        if (!File.Exists(Path.Combine(DirectoryPath, ManifestFileName)))
        {
            return false;
        }
        if (PresentChunks != TotalChunks)
        {
            StoreLog.ManifestWithMissingChunks(_store.Logger, SnapshotId, PresentChunks, TotalChunks);
        }
        return true;
    }

    private SnapshotManifest BuildManifest()
    {
        // In segments: one array of ChunkCount * 32 bytes stops at 2^26 chunks (256 GiB at 4 KiB chunks).
        var perSegment = _store.Options.ManifestHashesPerSegment;
        var hashes = _objects.Select(o => ManifestObject.NewHashSegments(o.ChunkCount, perSegment)).ToArray();
        ReadDurableRecords(record =>
        {
            var obj = _objectsById[record.ObjectId];
            var segment = hashes[obj.Position][(int)(record.Index / perSegment)];
            record.Hash.Write(segment.AsSpan((int)(record.Index % perSegment) * ChunkHash.Size, ChunkHash.Size));
        });
        return new SnapshotManifest
        {
            SnapshotId = SnapshotId,
            CreatedUtc = CreatedUtc,
            HashAlgorithm = HashAlgorithms.Blake3,
            Origin = Origin,
            Objects = [.. _objects.Select(o => new ManifestObject
            {
                Id = o.Info.Id,
                Name = o.Info.Name,
                Kind = o.Info.Kind,
                Size = o.Info.Size,
                ChunkSize = o.Info.ChunkSize,
                ChunkHashSegments = hashes[o.Position],
                HashesPerSegment = perSegment,
            })],
        };
    }

    /// <summary>Re-hashes every durable chunk of this snapshot; adds mismatches to <paramref name="faults"/>, returns the count checked.</summary>
    internal long Verify(List<ChunkFault> faults, CancellationToken ct)
    {
        ThrowIfClosed();
        var buffer = new byte[_objects.Max(o => (int?)o.Info.ChunkSize) ?? 0];
        long checkedChunks = 0;
        ReadDurableRecords(record =>
        {
            ct.ThrowIfCancellationRequested();
            var obj = _objectsById[record.ObjectId];
            var bytes = buffer.AsSpan(0, obj.ChunkLength(record.Index));
            var read = StoreIO.ReadFully(obj.Handle, obj.Path, bytes, obj.Offset(record.Index));
            var good = read == bytes.Length && (record.Hash.IsZeroMark
                ? !bytes.ContainsAnyExcept((byte)0)
                : ChunkHash.Compute(bytes) == record.Hash);
            if (!good)
            {
                StoreLog.VerifyMismatch(_store.Logger, SnapshotId, record.ObjectId, record.Index);
                faults.Add(new ChunkFault(SnapshotId, record.ObjectId, record.Index, record.Hash));
            }
            checkedChunks++;
        });
        return checkedChunks;
    }

    private void ThrowIncomplete(StoredObject obj)
    {
        var missing = 0L;
        while (missing < obj.ChunkCount && obj.Presence.IsPresent(missing))
        {
            missing++;
        }
        ThrowHelper.ThrowProtocol(ProtocolError.IncompleteSnapshot,
            $"snapshot {SnapshotId}: {PresentChunks} of {TotalChunks} chunks present; first missing is object {obj.Info.Id} chunk {missing}");
    }
}
