using System.Buffers;
using MessagePack;
using Microsoft.Win32.SafeHandles;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Shared.Fanout;

/// <summary>
/// One snapshot's encoded stream: bulk batches appended once (by the source's graph, or a relay's upstream
/// session) and read by any number of readers, each at its own pace. <see cref="Append"/> numbers them
/// 1, 2, 3… (<see cref="ChunkBatchMessage.Sequence"/>, the same at every hop).
/// <para>
/// The batches live in a spill file, not in memory: a reader far behind (a late joiner, a slow child) costs
/// disk, never RAM. The file is created 0600 in the owner's 0700 directory and unlinked right after it is
/// opened, so it vanishes with the handle, also when the process crashes. In memory there is only the index,
/// 16 bytes per batch (offset, header length, payload length). Each record is the MessagePack header
/// followed by the payload; reads are positional (pread), so readers never contend with each other or with
/// the appender for a file position.
/// </para>
/// <para>
/// Thread safety: appends are serialised by a lock (one appender is expected); reads run concurrently with
/// appends and each other. Readers wait for a batch not yet appended, and wake on append, completion or failure.
/// </para>
/// </summary>
public sealed class EncodedStream : IDisposable
{
    private readonly Lock _lock = new();
    // Positional reads and writes only (RandomAccess on the handle): the stream's own position is never used.
    private readonly FileStream _fileStream;
    private readonly SafeFileHandle _file;
    private readonly IBatchBufferSource _buffers;
    // Grows by doubling: 16 bytes per batch (a 1 TiB snapshot in 256 KiB batches is 4 Mi batches, 64 MiB).
    private IndexEntry[] _index = new IndexEntry[1024];
    private int _count;
    private long _fileLength;
    private SnapshotCompleteMessage? _completion;
    private CloseReason? _failure;
    private TaskCompletionSource _changed = NewSignal();
    private bool _disposed;

    private readonly record struct IndexEntry(long Offset, int HeaderLength, int PayloadLength);

    /// <summary>
    /// A stream spilled to the temp directory: a fresh 0700 directory (mkdtemp) holds the spill file only until it is open
    /// and unlinked, then goes too, so nothing of it is left on disk even when the process is SIGKILLed (a relay killed in a
    /// chain test had left one directory per run in /tmp).
    /// </summary>
    public static EncodedStream CreateSpilled(SnapshotOfferMessage offer, IBatchBufferSource buffers, string role)
    {
        var directory = Directory.CreateTempSubdirectory($"streamclone-{role}-");
        try
        {
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(directory.FullName, VmStateModes.Directory);
            }
            return new EncodedStream(offer, directory.FullName, buffers);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <param name="offer">The snapshot this stream carries (what every reader is offered).</param>
    /// <param name="spillDirectory">A 0700 directory of the owner's; the spill file is created in it and unlinked at once.</param>
    /// <param name="buffers">Where reads rent the leases they return.</param>
    public EncodedStream(SnapshotOfferMessage offer, string spillDirectory, IBatchBufferSource buffers)
    {
        Offer = offer;
        _buffers = buffers;
        var path = Path.Combine(spillDirectory, $"stream-{Guid.NewGuid():N}.spill");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = VmStateModes.File;
        }
        _fileStream = new FileStream(path, options);
        _file = _fileStream.SafeFileHandle;
        try
        {
            File.Delete(path);
        }
        catch
        {
            _fileStream.Dispose();
            throw;
        }
    }

    /// <summary>The snapshot's offer, as readers are given it.</summary>
    public SnapshotOfferMessage Offer { get; }

    /// <summary>Batches appended so far; the last one's sequence number.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>True once <see cref="Complete"/> was called: <see cref="Count"/> is final.</summary>
    public bool IsComplete => Volatile.Read(ref _completion) is not null;

    /// <summary>The completion message (root hashes), once complete.</summary>
    public SnapshotCompleteMessage? Completion => Volatile.Read(ref _completion);

    /// <summary>Why the stream failed, if it did (readers see it as <see cref="EncodedStreamFailedException"/>).</summary>
    public CloseReason? Failure => Volatile.Read(ref _failure);

    /// <summary>Bytes in the spill file (headers and payloads).</summary>
    public long SpilledBytes => Interlocked.Read(ref _fileLength);

    /// <summary>
    /// Appends the next batch: sets <paramref name="header"/>'s <see cref="ChunkBatchMessage.Sequence"/> to
    /// <see cref="Count"/> + 1 and stores header and payload. The caller keeps the payload (it is copied).
    /// Returns the sequence number given.
    /// </summary>
    public long Append(ChunkBatchMessage header, ReadOnlySpan<byte> payload)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_completion is not null || _failure is not null)
            {
                throw new InvalidOperationException("the encoded stream has ended; nothing may be appended");
            }
            var sequence = _count + 1;
            header.Sequence = sequence;
            var headerBytes = MessagePackSerializer.Serialize(header, MessagePackDefaults.Options);
            var offset = _fileLength;
            RandomAccess.Write(_file, headerBytes, offset);
            RandomAccess.Write(_file, payload, offset + headerBytes.Length);
            if (_count == _index.Length)
            {
                Array.Resize(ref _index, checked(_index.Length * 2));
            }
            _index[_count] = new IndexEntry(offset, headerBytes.Length, payload.Length);
            Interlocked.Exchange(ref _fileLength, checked(offset + headerBytes.Length + payload.Length));
            Volatile.Write(ref _count, sequence);
            Signal();
            return sequence;
        }
    }

    /// <summary>The stream is whole: readers past the last batch get null from <see cref="ReadAsync"/>.</summary>
    public void Complete(SnapshotCompleteMessage completion)
    {
        lock (_lock)
        {
            if (_completion is not null || _failure is not null)
            {
                return;
            }
            Volatile.Write(ref _completion, completion);
            Signal();
        }
    }

    /// <summary>The stream cannot be finished: every reader waiting for, or later asking for, a batch not appended gets the reason.</summary>
    public void Fail(CloseReason reason)
    {
        lock (_lock)
        {
            if (_completion is not null || _failure is not null)
            {
                return;
            }
            Volatile.Write(ref _failure, reason);
            Signal();
        }
    }

    /// <summary>
    /// Batch <paramref name="sequence"/> (1-based), decoded header and payload lease; waits until it is
    /// appended. Null when the stream completed with fewer batches. Throws
    /// <see cref="EncodedStreamFailedException"/> once the stream failed (batches already stored stay readable
    /// only until then: a failed stream is not worth finishing for anyone).
    /// </summary>
    public async ValueTask<StoredBatch?> ReadAsync(long sequence, CancellationToken ct)
    {
        if (!await WaitForAsync(sequence, ct))
        {
            return null;
        }
        var entry = EntryOf(sequence);
        var headerBytes = ArrayPool<byte>.Shared.Rent(entry.HeaderLength);
        ChunkBatchMessage header;
        try
        {
            ReadExactly(headerBytes.AsSpan(0, entry.HeaderLength), entry.Offset);
            header = MessagePackSerializer.Deserialize<ChunkBatchMessage>(headerBytes.AsMemory(0, entry.HeaderLength), MessagePackDefaults.Options, CancellationToken.None);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(headerBytes);
        }
        var payload = _buffers.Rent(entry.PayloadLength);
        try
        {
            ReadExactly(payload.Span, entry.Offset + entry.HeaderLength);
        }
        catch
        {
            payload.Dispose();
            throw;
        }
        return new StoredBatch(header, payload);
    }

    /// <summary>
    /// Batch <paramref name="sequence"/> as stored: the serialized MessagePack header followed by the payload,
    /// in one lease (for a sender that cuts them into datagrams). Same waiting and ending as <see cref="ReadAsync"/>.
    /// </summary>
    public async ValueTask<StoredBatchBytes?> ReadRawAsync(long sequence, CancellationToken ct)
    {
        if (!await WaitForAsync(sequence, ct))
        {
            return null;
        }
        var entry = EntryOf(sequence);
        var bytes = _buffers.Rent(checked(entry.HeaderLength + entry.PayloadLength));
        try
        {
            ReadExactly(bytes.Span, entry.Offset);
        }
        catch
        {
            bytes.Dispose();
            throw;
        }
        return new StoredBatchBytes(bytes, entry.HeaderLength);
    }

    /// <summary>Waits until the stream is complete (true) or failed (throws); for owners that outlive their readers.</summary>
    public async Task WaitForEndAsync(CancellationToken ct)
    {
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (_failure is { } failure)
                {
                    throw new EncodedStreamFailedException(failure);
                }
                if (_completion is not null)
                {
                    return;
                }
                changed = _changed.Task;
            }
            await changed.WaitAsync(ct);
        }
    }

    /// <summary>Waits until batch <paramref name="sequence"/> exists (true) or the stream completed without it (false), reading nothing.</summary>
    public ValueTask<bool> WaitForBatchAsync(long sequence, CancellationToken ct) => WaitForAsync(sequence, ct);

    /// <summary>True when batch <paramref name="sequence"/> exists; false when the stream completed without it.</summary>
    private async ValueTask<bool> WaitForAsync(long sequence, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(sequence, 1);
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_failure is { } failure)
                {
                    throw new EncodedStreamFailedException(failure);
                }
                if (sequence <= _count)
                {
                    return true;
                }
                if (_completion is not null)
                {
                    return false;
                }
                changed = _changed.Task;
            }
            await changed.WaitAsync(ct);
        }
    }

    private IndexEntry EntryOf(long sequence)
    {
        lock (_lock)
        {
            // The array may be replaced by a resize; the entry itself never changes once written.
            return _index[sequence - 1];
        }
    }

    private void ReadExactly(Span<byte> destination, long offset)
    {
        while (!destination.IsEmpty)
        {
            var read = RandomAccess.Read(_file, destination, offset);
            if (read == 0)
            {
                throw new IOException($"the encoded stream's spill file ended at {offset}, inside a stored batch");
            }
            destination = destination[read..];
            offset += read;
        }
    }

    // Under _lock: wake every waiter, and give later ones a fresh signal.
    private void Signal()
    {
        var fired = _changed;
        _changed = NewSignal();
        fired.TrySetResult();
    }

    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Closes the spill file (its space goes back at once: it has no name). Waiting readers get <see cref="ObjectDisposedException"/>-free failure.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _failure ??= CloseReason.LocalShutdown("the encoded stream was closed");
            Signal();
        }
        _fileStream.Dispose();
    }
}

/// <summary>One batch read from an <see cref="EncodedStream"/>: its header and its payload lease; the reader disposes it once.</summary>
public sealed class StoredBatch(ChunkBatchMessage header, BatchBuffer payload) : IDisposable
{
    public ChunkBatchMessage Header { get; } = header;

    public BatchBuffer Payload { get; } = payload;

    public void Dispose() => Payload.Dispose();
}

/// <summary>One batch's stored bytes: [0, HeaderLength) the MessagePack header, the rest the payload. The reader disposes it once.</summary>
public sealed class StoredBatchBytes(BatchBuffer bytes, int headerLength) : IDisposable
{
    public BatchBuffer Bytes { get; } = bytes;

    public int HeaderLength { get; } = headerLength;

    public ReadOnlyMemory<byte> Header => Bytes.Memory[..HeaderLength];

    public ReadOnlyMemory<byte> Payload => Bytes.Memory[HeaderLength..];

    public void Dispose() => Bytes.Dispose();
}

/// <summary>The stream a reader follows failed (the source could not read its snapshot, the relay lost its upstream).</summary>
public sealed class EncodedStreamFailedException(CloseReason reason) : Exception(reason.Detail)
{
    public CloseReason Reason { get; } = reason;
}
