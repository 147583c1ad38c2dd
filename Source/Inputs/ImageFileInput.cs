using Microsoft.Win32.SafeHandles;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Source.Inputs;

/// <summary>Raw image files as snapshot objects (object i = file i). Positional reads, no shared cursor.</summary>
public sealed class ImageFileInput : ISnapshotInput
{
    private readonly SafeFileHandle[] _handles;

    private ImageFileInput(SafeFileHandle[] handles, SnapshotOfferMessage offer)
    {
        _handles = handles;
        Offer = offer;
    }

    public SnapshotOfferMessage Offer { get; }

    /// <param name="images">Each file with its kind (memory image, disk image, device blob).</param>
    /// <param name="chunkSize">Bytes per chunk (a multiple of 4096).</param>
    /// <param name="snapshotId">Stable id: a sink that reconnects to the same source resumes the same snapshot.</param>
    public static ImageFileInput Open(IReadOnlyList<(string Path, ObjectKind Kind)> images, int chunkSize, string snapshotId)
    {
        ChunkMath.ValidateChunkSize(chunkSize);
        // Every sink would refuse the offer: say so here, once, instead of serving it.
        WireLimits.ThrowIfInvalidSnapshotId(snapshotId);
        var handles = new List<SafeFileHandle>();
        var offer = new SnapshotOfferMessage
        {
            SnapshotId = snapshotId,
            CreatedUtc = DateTime.UtcNow,
            Origin = string.Join(", ", images.Select(i => Path.GetFullPath(i.Path))),
        };
        try
        {
            for (var i = 0; i < images.Count; i++)
            {
                var (path, kind) = images[i];
                var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
                handles.Add(handle);
                offer.Objects.Add(new ObjectInfo
                {
                    Id = i,
                    Name = Path.GetFileName(path),
                    Kind = kind,
                    Size = RandomAccess.GetLength(handle),
                    ChunkSize = chunkSize,
                });
            }
        }
        catch
        {
            foreach (var handle in handles)
            {
                handle.Dispose();
            }
            throw;
        }
        return new ImageFileInput([.. handles], offer);
    }

    /// <summary>Reads within the object's offered size; a start outside [0, size] or an unknown object throws <see cref="ArgumentOutOfRangeException"/>.</summary>
    public async ValueTask<int> ReadAsync(int objectId, long offset, Memory<byte> destination, CancellationToken ct)
    {
        if ((uint)objectId >= (uint)_handles.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(objectId), objectId, $"there are {_handles.Length} image files");
        }
        var size = Offer.Objects[objectId].Size;
        if (!WireLimits.IsValidReadStart(offset, destination.Length, size))
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{Offer.Objects[objectId].Name} has {size} bytes");
        }
        // Cut at the offered size: a file that grew since it was offered is not read past it.
        destination = destination[..(int)Math.Min(destination.Length, size - offset)];
        var handle = _handles[objectId];
        var total = 0;
        while (total < destination.Length)
        {
            var read = await RandomAccess.ReadAsync(handle, destination[total..], checked(offset + total), ct);
            if (read == 0)
            {
                break;
            }
            total += read;
        }
        return total;
    }

    public ValueTask DisposeAsync()
    {
        foreach (var handle in _handles)
        {
            handle.Dispose();
        }
        return ValueTask.CompletedTask;
    }
}
