using System.Threading.Channels;
using StreamClone.Qemu;
using StreamClone.Qemu.Nbd;

namespace StreamClone.Source.Live;

/// <summary>
/// Reads one disk at the snapshot instant through QEMU's NBD export of its fleecing view. Block status
/// (base:allocation) comes first for every read: ranges QEMU reports as zeros are cleared here without an
/// NBD READ, so holes cost neither QEMU's I/O thread nor the socket. The readers are connected once the
/// export exists (<see cref="ConnectAsync"/>); reads before that wait for it.
/// </summary>
public sealed class FleecedDiskReader : IAsyncDisposable
{
    /// <summary>Connections per disk: one for the bulk pass and one for a demand request beside it (reads on one
    /// connection are one at a time); more would only queue on QEMU's one I/O thread.</summary>
    private const int Connections = 2;

    private readonly TaskCompletionSource<Channel<NbdClient>> _pool = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<NbdClient> _clients = [];

    public FleecedDiskReader(FleecedDisk disk)
    {
        Disk = disk;
        Name = Path.GetFileName(disk.File) is { Length: > 0 } file ? file : disk.Device;
    }

    public FleecedDisk Disk { get; }

    /// <summary>The object's name in the offer: the image's file name (the restore's clone disk is named after it).</summary>
    public string Name { get; }

    public long Size => Disk.Size;

    /// <summary>Opens the reader's connections to <paramref name="socketPath"/>; the export's size must be the disk's.</summary>
    public async Task ConnectAsync(string socketPath, CancellationToken ct)
    {
        try
        {
            var pool = Channel.CreateBounded<NbdClient>(Connections);
            for (var i = 0; i < Connections; i++)
            {
                var client = await NbdClient.ConnectAsync(socketPath, Disk.ExportName, ct);
                _clients.Add(client);
                if (client.Size != Disk.Size)
                {
                    throw new NbdException($"NBD export '{Disk.ExportName}' is {client.Size} bytes, the disk {Name} is {Disk.Size}");
                }
                pool.Writer.TryWrite(client);
            }
            _pool.TrySetResult(pool);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Fail(ex);
            throw;
        }
    }

    /// <summary>Readers waiting for the connection get <paramref name="error"/> instead.</summary>
    public void Fail(Exception error) => _pool.TrySetException(error);

    /// <summary>Reads [offset, offset + destination.Length) clipped to the disk; returns the bytes read.</summary>
    public async ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken ct)
    {
        if (offset < 0 || offset >= Size)
        {
            return 0;
        }
        var length = (int)Math.Min(destination.Length, Size - offset);
        var pool = await _pool.Task.WaitAsync(ct);
        var client = await pool.Reader.ReadAsync(ct);
        try
        {
            var done = 0;
            while (done < length)
            {
                foreach (var extent in await client.GetExtentsAsync(offset + done, length - done, ct))
                {
                    var slice = destination.Slice(done, (int)extent.Length);
                    if (extent.Zero)
                    {
                        slice.Span.Clear();
                    }
                    else
                    {
                        await client.ReadAsync(extent.Offset, slice, ct);
                    }
                    done += (int)extent.Length;
                }
            }
            return length;
        }
        finally
        {
            pool.Writer.TryWrite(client);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Fail(new ObjectDisposedException(nameof(FleecedDiskReader)));
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }
    }
}
