using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>
/// A source that speaks the frame format but says what a test wants: it answers the sink's Hello on
/// both lanes, sends <see cref="Offer"/>, collects the sink's inventory, then sends whatever
/// <see cref="BulkFrames"/> makes and holds the lanes open until the sink closes them. What the sink
/// said (inventory, error frame) is recorded for the test.
/// </summary>
public sealed class HostileSource : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentBag<Task> _connections = [];
    private readonly TaskCompletionSource _bulkEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _inventoryReceived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _accepting;

    public HostileSource(IPAddress address, SnapshotOfferMessage offer)
    {
        Offer = offer;
        _listener = new TcpListener(address, 0);
        _listener.Start();
        EndPoint = (IPEndPoint)_listener.LocalEndpoint;
        _accepting = AcceptAsync();
    }

    public SnapshotOfferMessage Offer { get; }

    /// <summary>Frames sent on the bulk lane after the sink's inventory, written by the connection's own FrameWriter.</summary>
    public Func<FrameWriter, IBufferWriter<byte>, Task>? BulkFrames { get; init; }

    public IPEndPoint EndPoint { get; }

    public string Connect => $"{EndPoint.Address}:{EndPoint.Port}";

    /// <summary>Hashes the sink listed as held; null until its last inventory frame.</summary>
    public IReadOnlyList<ChunkHash>? Inventory { get; private set; }

    /// <summary>The Error frame the sink sent on the bulk lane, if any.</summary>
    public ErrorMessage? ErrorReceived { get; private set; }

    /// <summary>Completes once the sink's last inventory frame arrived (or the bulk lane ended without it).</summary>
    public Task InventoryReceived => _inventoryReceived.Task;

    /// <summary>Completes when the sink closes the bulk lane (or the lane fails).</summary>
    public Task BulkEnded => _bulkEnded.Task;

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptSocketAsync(_stop.Token);
                _connections.Add(ServeAsync(socket));
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        var bulk = false;
        using (socket)
        {
            var connection = new RawFramePeer(socket);
            try
            {
                var hello = await connection.ReceiveAsync<HelloMessage>(FrameType.Hello, _stop.Token);
                bulk = hello.Lane == Lane.Bulk;
                await connection.SendAsync(FrameType.Hello, new HelloMessage { Role = "source", Lane = hello.Lane, SessionId = hello.SessionId }, _stop.Token);
                if (bulk)
                {
                    await connection.SendAsync(FrameType.SnapshotOffer, Offer, _stop.Token);
                    var hashes = new List<ChunkHash>();
                    while (await connection.ReceiveAsync(_stop.Token) is { } frame)
                    {
                        if (frame.Type == FrameType.Error)
                        {
                            ErrorReceived = frame.DecodeHeader<ErrorMessage>();
                            return;
                        }
                        if (frame.Type == FrameType.Inventory)
                        {
                            var inventory = frame.DecodeHeader<InventoryMessage>();
                            var payload = frame.Payload.ToArray();
                            for (var i = 0; i < inventory.Count; i++)
                            {
                                hashes.Add(ChunkHash.Read(payload.AsSpan(i * ChunkHash.Size)));
                            }
                            if (inventory.Last)
                            {
                                Inventory = hashes;
                                _inventoryReceived.TrySetResult();
                                break;
                            }
                        }
                    }
                    if (BulkFrames is not null)
                    {
                        await connection.SendFramesAsync(BulkFrames, _stop.Token);
                    }
                }
                // Hold the lane until the sink closes it, noting an error frame on the way.
                while (await connection.ReceiveAsync(_stop.Token) is { } frame)
                {
                    if (bulk && frame.Type == FrameType.Error)
                    {
                        ErrorReceived = frame.DecodeHeader<ErrorMessage>();
                    }
                }
            }
            catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or StreamClone.Shared.Protocol.ProtocolViolationException)
            {
                // The sink cut the connection: that is what most tests provoke.
            }
            finally
            {
                if (bulk)
                {
                    _inventoryReceived.TrySetResult();
                    _bulkEnded.TrySetResult();
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        await Task.WhenAll(_connections);
        _stop.Dispose();
    }
}
