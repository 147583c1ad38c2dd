using System.IO.MemoryMappedFiles;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source.Inputs;

namespace StreamClone.Source.Live;

/// <summary>
/// A live VM's snapshot as it arrives: RAM pages land at their place in each RAM block (parsed from
/// QEMU's background-snapshot migration stream by <see cref="QemuStreamReader"/>), the disks are read
/// at the snapshot instant through QEMU's NBD export of their fleecing view (<see cref="FleecedDiskReader"/>),
/// and the device state becomes one object at the end. Readers (the
/// bulk pass, demand requests) wait for pages that have not arrived yet, so sinks are served while
/// the migration is still running. Pages are kept in a memory-mapped file per RAM block so later
/// sinks and demand requests can read any page: the stream itself is never written anywhere. The files
/// are allocated in full when the block list arrives, so a work directory too small fails then, cleanly.
/// </summary>
public sealed partial class LiveSnapshotInput : ISnapshotInput, IMigrationStreamSink
{
    private readonly string _workDir;
    private readonly int _chunkSize;
    private readonly string _snapshotId;
    private readonly IReadOnlyList<FleecedDiskReader> _disks;
    private readonly TaskCompletionSource<SnapshotOfferMessage> _offer = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private RamBlock[] _blocks = [];
    private byte[]? _deviceState;

    /// <param name="workDir">Where the RAM block files go (allocated up front; removed on dispose).</param>
    /// <param name="disks">The VM's disks at the snapshot instant, offered after the RAM blocks (owned: disposed with this input).</param>
    /// <param name="chunkSize">Bytes per chunk.</param>
    /// <param name="snapshotId">The snapshot's id.</param>
    public LiveSnapshotInput(string workDir, IReadOnlyList<FleecedDiskReader> disks, int chunkSize, string snapshotId)
    {
        ChunkMath.ValidateChunkSize(chunkSize);
        WireLimits.ThrowIfInvalidSnapshotId(snapshotId);
        _workDir = workDir;
        _disks = disks;
        _chunkSize = chunkSize;
        _snapshotId = snapshotId;
        Directory.CreateDirectory(workDir);
    }

    /// <summary>The offer, once the RAM block list has arrived (the first thing after the stream's header).</summary>
    public Task<SnapshotOfferMessage> OfferReady => _offer.Task;

    public SnapshotOfferMessage Offer => _offer.Task.IsCompletedSuccessfully
        ? _offer.Task.Result
        : throw new InvalidOperationException("The RAM block list has not arrived yet.");

    /// <summary>Completes when every page and the device state are in; faults if the stream failed.</summary>
    public Task Completed => _completed.Task;

    public long PagesReceived => _blocks.Sum(b => b.PagesPresent);

    /// <summary>Ends the input with an error: readers waiting for pages fail with it instead of hanging.</summary>
    public void Fail(Exception error)
    {
        _offer.TrySetException(error);
        _completed.TrySetException(error);
        foreach (var block in _blocks)
        {
            block.Fail(error);
        }
        _deviceStateArrived.TrySetException(error);
        foreach (var disk in _disks)
        {
            disk.Fail(error);
        }
    }

    /// <summary>
    /// Parses QEMU's migration stream from <paramref name="stream"/> into this input until the stream ends.
    /// A stream cut short or corrupt (<see cref="QemuStreamException"/>), a full work directory or any other
    /// failure fails the input first — waiting readers get the error, the device state never arrives, so
    /// no sink is told the snapshot is complete — and is then thrown as a <see cref="LiveSnapshotException"/>.
    /// Does not complete <paramref name="stream"/>.
    /// </summary>
    public async Task<QemuStreamStatistics> ReceiveAsync(PipeReader stream, CancellationToken ct)
    {
        var reader = new QemuStreamReader(stream, this);
        try
        {
            await reader.ReadToEndAsync(ct);
            return reader.Statistics;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            var error = ex as LiveSnapshotException ?? new LiveSnapshotException($"the VM's migration stream failed: {ex.Message}", ex);
            Fail(error);
            throw error;
        }
    }

    public ValueTask OnRamBlocksAsync(IReadOnlyList<RamBlockInfo> blocks, CancellationToken ct)
    {
        var created = new List<RamBlock>();
        try
        {
            foreach (var block in blocks)
            {
                created.Add(new RamBlock(block.Name, block.UsedLength, Path.Combine(_workDir, $"ram-{created.Count}.img")));
            }
        }
        catch
        {
            foreach (var block in created)
            {
                block.Dispose();
            }
            throw;
        }
        _blocks = [.. created];
        var offer = new SnapshotOfferMessage { SnapshotId = _snapshotId, CreatedUtc = DateTime.UtcNow, Origin = "live VM (QEMU background snapshot)" };
        foreach (var block in blocks)
        {
            offer.Objects.Add(new ObjectInfo { Id = offer.Objects.Count, Name = block.Name, Kind = ObjectKind.Memory, Size = block.UsedLength, ChunkSize = _chunkSize });
        }
        foreach (var disk in _disks)
        {
            offer.Objects.Add(new ObjectInfo { Id = offer.Objects.Count, Name = disk.Name, Kind = ObjectKind.Disk, Size = disk.Size, ChunkSize = _chunkSize });
        }
        offer.Objects.Add(new ObjectInfo { Id = offer.Objects.Count, Name = DeviceStateObject.Name, Kind = ObjectKind.DeviceState, Size = DeviceStateObject.Capacity, ChunkSize = _chunkSize });
        _offer.TrySetResult(offer);
        return ValueTask.CompletedTask;
    }

    public ValueTask OnPageAsync(int blockIndex, long offset, ReadOnlyMemory<byte> page, CancellationToken ct)
    {
        _blocks[blockIndex].Write(offset, page.Span);
        return ValueTask.CompletedTask;
    }

    public ValueTask OnFilledPageAsync(int blockIndex, long offset, byte fill, CancellationToken ct)
    {
        _blocks[blockIndex].Fill(offset, fill);
        return ValueTask.CompletedTask;
    }

    public ValueTask OnDeviceStateAsync(DeviceStateBlob blob, CancellationToken ct)
    {
        _deviceState = DeviceStateObject.Pack(blob);
        _deviceStateArrived.TrySetResult();
        _completed.TrySetResult();
        return ValueTask.CompletedTask;
    }

    private readonly TaskCompletionSource _deviceStateArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Reads within the object's offered size; an unknown object or a start outside [0, size] throws
    /// <see cref="ArgumentOutOfRangeException"/> before any memory is touched, whatever the caller checked.
    /// </summary>
    public async ValueTask<int> ReadAsync(int objectId, long offset, Memory<byte> destination, CancellationToken ct)
    {
        var objects = Offer.Objects;
        if ((uint)objectId >= (uint)objects.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(objectId), objectId, $"the snapshot has {objects.Count} objects");
        }
        if (!WireLimits.IsValidReadStart(offset, destination.Length, objects[objectId].Size))
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{objects[objectId].Name} has {objects[objectId].Size} bytes");
        }
        if (objectId < _blocks.Length)
        {
            return await _blocks[objectId].ReadAsync(offset, destination, ct);
        }
        if (objectId < _blocks.Length + _disks.Count)
        {
            return await _disks[objectId - _blocks.Length].ReadAsync(offset, destination, ct);
        }
        await _deviceStateArrived.Task.WaitAsync(ct);
        var length = (int)Math.Min(destination.Length, DeviceStateObject.Capacity - offset);
        var span = destination.Span[..length];
        span.Clear();
        var state = _deviceState!;
        if (offset < state.Length)
        {
            state.AsSpan((int)offset, (int)Math.Min(length, state.Length - offset)).CopyTo(span);
        }
        return length;
    }

    public async ValueTask DisposeAsync()
    {
        Fail(new ObjectDisposedException(nameof(LiveSnapshotInput)));
        foreach (var block in _blocks)
        {
            block.Dispose();
        }
        foreach (var disk in _disks)
        {
            await disk.DisposeAsync();
        }
        try
        {
            Directory.Delete(_workDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>
    /// One RAM block: a preallocated file mapped into memory, a bitmap of arrived pages, and a wake-up
    /// for readers. Internal (not private) so unit tests can aim hostile offsets at it directly.
    /// </summary>
    internal sealed partial class RamBlock : IDisposable
    {
        private const int Page = ChunkMath.PageSize;
        private readonly MemoryMappedFile _file;
        private readonly MemoryMappedViewAccessor _view;
        private readonly nint _base;
        private readonly long _mapped;
        private readonly ulong[] _present;
        private long _pagesPresent;
        private TaskCompletionSource _arrival = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _waiters;
        private Exception? _error;

        public RamBlock(string name, long size, string path)
        {
            Name = name;
            Size = size;
            // A zero-length mapping is not allowed; ROM-sized blocks are at least one page anyway.
            var capacity = Math.Max(size, Page);
            _mapped = capacity;
            var stream = CreatePrivateFile(path);
            try
            {
                Reserve(stream.SafeFileHandle, path, capacity);
                _file = MemoryMappedFile.CreateFromFile(stream, null, capacity, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            }
            catch
            {
                stream.Dispose();
                throw;
            }
            _view = _file.CreateViewAccessor(0, capacity, MemoryMappedFileAccess.ReadWrite);
            _base = MapView(_view);
            _present = new ulong[((size / Page) + 64) / 64];
        }

        public string Name { get; }

        public long Size { get; }

        /// <summary>
        /// Creates the file 0600 from the start (open(2) with that mode, not a chmod afterwards): it
        /// holds the guest's memory, and a reader who opened it in between would keep its descriptor.
        /// A file left by an earlier run is removed first, since its mode is whatever it was.
        /// </summary>
        private static FileStream CreatePrivateFile(string path)
        {
            File.Delete(path);
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.Read };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = VmStateModes.File;
            }
            return new FileStream(path, options);
        }

        /// <summary>
        /// Allocates the whole file before it is mapped: a page stored through the mapping into a file
        /// system that is full (a sparse file on a small tmpfs) is a SIGBUS that kills the process; a
        /// full disk must be an <see cref="IOException"/> here instead, before the first page.
        /// </summary>
        private static void Reserve(SafeFileHandle handle, string path, long length)
        {
            var error = PosixFallocate(handle, 0, length);
            if (error != 0)
            {
                throw new IOException($"cannot reserve {length >> 20} MiB for the VM's RAM in {path}: {Marshal.GetPInvokeErrorMessage(error)}");
            }
        }

        /// <summary>posix_fallocate(3): returns the error number instead of setting errno.</summary>
        [LibraryImport("libc", EntryPoint = "posix_fallocate")]
        private static partial int PosixFallocate(SafeFileHandle fd, long offset, long length);

        private static unsafe nint MapView(MemoryMappedViewAccessor view)
        {
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            return (nint)(pointer + view.PointerOffset);
        }

        /// <summary>
        /// The only way to the mapping, so the only bound that keeps a bad offset from reading or
        /// writing other memory: checked here whatever the callers checked, without adding offset and length.
        /// </summary>
        private unsafe Span<byte> Bytes(long offset, int length)
        {
            if (offset < 0 || length < 0 || offset > _mapped || length > _mapped - offset)
            {
                throw new ArgumentOutOfRangeException(nameof(offset), offset, $"{length} bytes at {offset} are outside RAM block {Name} ({_mapped} bytes mapped)");
            }
            return new((byte*)_base + offset, length);
        }

        public long PagesPresent => Interlocked.Read(ref _pagesPresent);

        public void Write(long offset, ReadOnlySpan<byte> page)
        {
            CheckPage(offset);
            page.CopyTo(Bytes(offset, Page));
            MarkPresent(offset);
        }

        public void Fill(long offset, byte fill)
        {
            CheckPage(offset);
            if (fill != 0)
            {
                Bytes(offset, Page).Fill(fill);
            }
            MarkPresent(offset);
        }

        private void CheckPage(long offset)
        {
            if (offset < 0 || offset % Page != 0 || offset > Size - Page)
            {
                throw new ProtocolViolationException(ProtocolError.BadChunkPlacement, $"page at {offset} is outside RAM block {Name} ({Size} bytes)");
            }
        }

        private void MarkPresent(long offset)
        {
            var page = offset / Page;
            var bit = 1UL << (int)(page % 64);
            if ((Interlocked.Or(ref _present[page / 64], bit) & bit) == 0)
            {
                Interlocked.Increment(ref _pagesPresent);
            }
            // Pulse only when someone waits: the common case (nobody behind the parser) costs nothing.
            if (Volatile.Read(ref _waiters) > 0)
            {
                Interlocked.Exchange(ref _arrival, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            }
        }

        private bool RangePresent(long offset, int length)
        {
            for (var page = offset / Page; page <= (offset + length - 1) / Page; page++)
            {
                if ((Volatile.Read(ref _present[page / 64]) & (1UL << (int)(page % 64))) == 0)
                {
                    return false;
                }
            }
            return true;
        }

        public async ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
        {
            if (offset < 0 || offset > Size)
            {
                throw new ArgumentOutOfRangeException(nameof(offset), offset, $"RAM block {Name} has {Size} bytes");
            }
            var length = (int)Math.Min(destination.Length, Size - offset);
            if (length <= 0)
            {
                return 0;
            }
            // Once the stream failed the snapshot can never complete: pages that did arrive are not served
            // either, so every session ends at once with the stream's error (IncompleteSnapshot to its sink)
            // instead of streaming on past the source's grace period and being cut mid-frame.
            if (Volatile.Read(ref _error) is { } failed)
            {
                throw new IOException($"RAM block {Name}: the migration stream failed: {failed.Message}", failed);
            }
            while (!RangePresent(offset, length))
            {
                Interlocked.Increment(ref _waiters);
                try
                {
                    var arrival = Volatile.Read(ref _arrival).Task;
                    if (_error is { } error)
                    {
                        throw new IOException($"RAM block {Name}: the migration stream failed before this page arrived: {error.Message}", error);
                    }
                    if (RangePresent(offset, length))
                    {
                        break;
                    }
                    await arrival.WaitAsync(ct);
                }
                finally
                {
                    Interlocked.Decrement(ref _waiters);
                }
            }
            Bytes(offset, length).CopyTo(destination.Span);
            return length;
        }

        public void Fail(Exception error)
        {
            Volatile.Write(ref _error, error);
            Volatile.Read(ref _arrival).TrySetException(error);
        }

        public void Dispose()
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _file.Dispose();
        }
    }
}
