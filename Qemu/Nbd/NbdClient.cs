using System.Net.Sockets;

namespace StreamClone.Qemu.Nbd;

/// <summary>One range of an export as NBD block status (base:allocation) describes it.</summary>
/// <param name="Offset">Start, in bytes from the export's start.</param>
/// <param name="Length">Bytes (never 0).</param>
/// <param name="Zero">The range reads as zeros (NBD_STATE_ZERO): no READ is needed for it.</param>
public readonly record struct NbdExtent(long Offset, long Length, bool Zero);

/// <summary>The NBD server broke the protocol or failed a request; the message says which and with what value.</summary>
public sealed class NbdException : IOException
{
    public NbdException()
    {
    }

    public NbdException(string message)
        : base(message)
    {
    }

    public NbdException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// A read-only NBD client over a Unix socket, for QEMU's own NBD export of a point-in-time disk view
/// (disk-fleecing.md §5, nbd.md). Fixed newstyle handshake with structured replies and the
/// base:allocation meta context (<see cref="NbdClient"/>.Handshake.cs), then READ, BLOCK_STATUS and DISC
/// (.Transmission.cs). The server is a peer like any other: every length, offset and count it sends is
/// checked before it sizes or places anything. One request is in flight at a time (callers share the
/// client through <see cref="_gate"/>); open several clients for parallel reads.
/// </summary>
public sealed partial class NbdClient : IAsyncDisposable
{
    private readonly Socket _socket;
    private NetworkStream _stream = null!;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _broken;
    private bool _disposed;

    private NbdClient(Socket socket, string export)
    {
        _socket = socket;
        Export = export;
    }

    public string Export { get; }

    /// <summary>Export size in bytes (NBD_INFO_EXPORT).</summary>
    public long Size { get; private set; }

    /// <summary>Largest READ payload the server takes (NBD_INFO_BLOCK_SIZE maximum, capped at <see cref="MaxReadLength"/>).</summary>
    public int MaxRead { get; private set; } = MaxReadLength;

    /// <summary>Whether the server selected base:allocation, so <see cref="GetExtentsAsync"/> can tell zero ranges.</summary>
    public bool HasAllocationContext { get; private set; }

    /// <summary>Connects to <paramref name="socketPath"/> and opens <paramref name="export"/> read-only.</summary>
    public static async Task<NbdClient> ConnectAsync(string socketPath, string export, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        var client = new NbdClient(socket, export);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
            client._stream = new NetworkStream(socket, ownsSocket: false);
            await client.HandshakeAsync(ct);
            return client;
        }
        catch
        {
            client.Close();
            throw;
        }
    }

    /// <summary>Sends NBD_CMD_DISC (when the connection is still in step) and closes it. Never throws.</summary>
    public async ValueTask DisposeAsync()
    {
        // A request stuck on a server that stopped answering holds the gate: closing the socket ends it.
        if (!await _gate.WaitAsync(TimeSpan.FromSeconds(5)))
        {
            _broken = true;
            _disposed = true;
            Close();
            return;
        }
        try
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            if (!_broken)
            {
                try
                {
                    using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await SendRequestAsync(CommandDisconnect, 0, 0, 0, quick.Token);
                }
                catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
                {
                    // The server went first; nothing to say goodbye to.
                }
            }
            Close();
        }
        finally
        {
            _gate.Release();
        }
    }

    private void Close()
    {
        _stream?.Dispose();
        _socket.Dispose();
    }

    private async Task ReadExactlyAsync(Memory<byte> buffer, CancellationToken ct)
    {
        try
        {
            await _stream.ReadExactlyAsync(buffer, ct);
        }
        catch (EndOfStreamException ex)
        {
            throw new NbdException($"NBD export '{Export}': the server closed the connection", ex);
        }
    }
}
