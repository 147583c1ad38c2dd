using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Net;
using System.Net.Sockets;
using MessagePack;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;
using StreamClone.Source;
using StreamClone.Source.Live;
using StreamClone.Source.Pipeline;
using StreamClone.Store.Upstream;
using ProtocolViolationException = StreamClone.Shared.Protocol.ProtocolViolationException;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// The demand path against a live source's RAM blocks. The input is a DemandRequest header. It goes
/// (1) as a frame to a real <see cref="DownstreamSession"/>'s demand lane over loopback TCP: the answer must be
/// exactly the requested chunks with the block's bytes, or an Error frame; and (2) as the read the request
/// names — chunk index × chunk size, count × chunk size — straight to <see cref="LiveSnapshotInput.ReadAsync"/>,
/// the layer below the session's checks: it must refuse a place outside the object, never hand back bytes
/// that are not the object's. (2) is how an unchecked offset added to the mapping's base pointer shows up:
/// as bytes that differ from the block, an IndexOutOfRangeException from the presence bitmap, or a SIGSEGV.
/// </summary>
internal sealed class DemandTarget : FuzzTarget, IDisposable
{
    private const int ChunkSize = 2 * FuzzSnapshot.Page;
    private static readonly TransportOptions Transport = new();
    private readonly string _workDir;
    private readonly LiveSnapshotInput _input;
    private readonly EncodedStream _stream;
    private readonly DownstreamServer _server;
    private readonly DownstreamSession _session;
    private readonly Socket _listener;
    private readonly IReadOnlyList<ObjectInfo> _objects;
    private readonly int _ramBlocks;
    private Lane? _lane;

    public DemandTarget()
        : base("demand", typeof(ProtocolViolationException), typeof(ArgumentException), typeof(IOException))
    {
        _workDir = FuzzScratch.For("demand");
        _input = new LiveSnapshotInput(_workDir, [], ChunkSize, "fuzz-live");
        RamBlockInfo[] blocks = [new("pc.ram", 39 * FuzzSnapshot.Page), new("pc.bios", 3 * FuzzSnapshot.Page)];
        _ramBlocks = blocks.Length;
        _input.OnRamBlocksAsync(blocks, default).AsTask().GetAwaiter().GetResult();
        for (var b = 0; b < blocks.Length; b++)
        {
            for (long offset = 0; offset < blocks[b].UsedLength; offset += FuzzSnapshot.Page)
            {
                var page = new byte[FuzzSnapshot.Page];
                for (var i = 0; i < page.Length; i++)
                {
                    page[i] = FuzzSnapshot.ByteAt(b, offset + i);
                }
                _input.OnPageAsync(b, offset, page, default).AsTask().GetAwaiter().GetResult();
            }
        }
        _input.OnDeviceStateAsync(new DeviceStateBlob(ReadOnlyMemory<byte>.Empty, 0, "ram", 0, 4, 4096, blocks, new byte[] { 0 }), default)
            .AsTask().GetAwaiter().GetResult();
        _objects = _input.Offer.Objects;
        var options = new SourceOptions { ChunkSize = ChunkSize, CompressionLevel = 1 };
        _stream = new EncodedStream(_input.Offer, _workDir, options.Buffers);
        _server = new DownstreamServer(options, Transport, NodeRoles.Source, MetricRole.Source, new InputDemandReader(_input), NullLogger.Instance, _stream);
        _session = new DownstreamSession("fuzz", new StreamClone.Shared.Transport.PeerIdentity("fuzz", false, "memory"), _server, NullLogger.Instance, CancellationToken.None);
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen(1);
    }

    public override IEnumerable<byte[]> Seeds()
    {
        DemandRequestMessage[] requests =
        [
            new() { RequestId = 1, ObjectId = 0, FirstIndex = 0, Count = 1 },
            new() { RequestId = 2, ObjectId = 0, FirstIndex = 17, Count = 3, ForceData = true },
            new() { RequestId = 3, ObjectId = 1, FirstIndex = 1, Count = 1 },
            new() { RequestId = 4, ObjectId = 2, FirstIndex = 0, Count = 2 },
            new() { RequestId = 5, ObjectId = 0, FirstIndex = long.MaxValue / ChunkSize, Count = 1 },
            // Hostile places the session must refuse and the input must refuse on its own (finding 1 of
            // issue 6: an index whose byte offset is negative reached the RAM block's base pointer). At -20
            // the presence bitmap's wrapped bit index finds the pages "present" and 8 KiB from before the
            // mapping come back; at -1 the read waits forever for a page that cannot arrive.
            new() { RequestId = 9, ObjectId = 0, FirstIndex = -20, Count = 1 },
            new() { RequestId = 6, ObjectId = 0, FirstIndex = -1, Count = 1 },
            new() { RequestId = 7, ObjectId = 1, FirstIndex = long.MinValue / ChunkSize, Count = 2 },
            new() { RequestId = 8, ObjectId = 0, FirstIndex = (long.MaxValue / ChunkSize) + 1, Count = 1 },
        ];
        return requests.Select(r => MessagePackSerializer.Serialize(r, MessagePackDefaults.Options));
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        var header = input.ToArray();
        ThroughSessionAsync(header).GetAwaiter().GetResult();
        var request = new Frame(FrameType.DemandRequest, 0, new ReadOnlySequence<byte>(header), ReadOnlySequence<byte>.Empty)
            .DecodeHeader<DemandRequestMessage>();
        ThroughInputAsync(request).GetAwaiter().GetResult();
    }

    /// <summary>The read a request names, without the session's range check in front.</summary>
    private async Task ThroughInputAsync(DemandRequestMessage request)
    {
        if ((uint)request.ObjectId >= (uint)_ramBlocks)
        {
            return;
        }
        var obj = _objects[request.ObjectId];
        var offset = unchecked(request.FirstIndex * obj.ChunkSize);
        var length = (int)Math.Clamp((long)request.Count * obj.ChunkSize, 0, WireLimits.MaxDemandBytes);
        var buffer = new byte[length];
        var read = await _input.ReadAsync(obj.Id, offset, buffer, CancellationToken.None);
        if (read <= 0)
        {
            return;
        }
        if (offset < 0 || read > length || offset > obj.Size - read)
        {
            throw new FuzzInvariantException($"{obj.Name}: read {read} bytes at {offset} of a {obj.Size}-byte block");
        }
        for (var i = 0; i < read; i++)
        {
            if (buffer[i] != FuzzSnapshot.ByteAt(obj.Id, offset + i))
            {
                throw new FuzzInvariantException($"{obj.Name}: byte {offset + i} read back as {buffer[i]}, the block holds {FuzzSnapshot.ByteAt(obj.Id, offset + i)}");
            }
        }
    }

    /// <summary>One request on the session's demand lane; an Error answer closes the lane and the next input opens a new one.</summary>
    private async Task ThroughSessionAsync(byte[] header)
    {
        var lane = _lane ??= await Lane.OpenAsync(_listener, _session);
        await lane.SendAsync(header);
        var (type, answer, payload) = await lane.ReceiveAsync();
        if (type is null)
        {
            await lane.DisposeAsync();
            _lane = null;
            return;
        }
        if (type != FrameType.ChunkBatch)
        {
            throw new FuzzInvariantException($"the demand lane answered with a {type} frame");
        }
        var request = MessagePackSerializer.Deserialize<DemandRequestMessage>(header, MessagePackDefaults.Options);
        var batch = MessagePackSerializer.Deserialize<ChunkBatchMessage>(answer, MessagePackDefaults.Options);
        if (batch.ObjectId != request.ObjectId || batch.FirstIndex != request.FirstIndex || batch.Kinds.Length != request.Count || batch.RequestId != request.RequestId)
        {
            throw new FuzzInvariantException($"asked for {request.ObjectId}:{request.FirstIndex}+{request.Count}, got {batch.ObjectId}:{batch.FirstIndex}+{batch.Kinds.Length}");
        }
        var rented = BatchBufferPool.Shared.Rent(payload.Length);
        payload.CopyTo(rented.Span);
        var verified = BatchVerifier.Verify(new ReceivedBatch { Header = batch, Payload = rented }, _objects, BatchBufferPool.Shared);
        try
        {
            var obj = verified.Object;
            var at = 0;
            for (var i = 0; i < batch.Kinds.Length; i++)
            {
                var index = batch.FirstIndex + i;
                var expected = obj.Kind == ObjectKind.Memory ? FuzzSnapshot.Chunk(obj, index) : null;
                var kind = (ChunkEntryKind)batch.Kinds[i];
                if (kind == ChunkEntryKind.Data)
                {
                    var length = ChunkMath.ChunkLength(obj.Size, obj.ChunkSize, index);
                    if (expected is not null && !verified.DataSpan.Slice(at, length).SequenceEqual(expected))
                    {
                        throw new FuzzInvariantException($"{obj.Name} chunk {index}: the answer's bytes are not the block's");
                    }
                    at += length;
                }
                else if (kind == ChunkEntryKind.Zero && expected is not null && expected.AsSpan().ContainsAnyExcept((byte)0))
                {
                    throw new FuzzInvariantException($"{obj.Name} chunk {index}: answered as zero, the block holds data");
                }
            }
        }
        finally
        {
            verified.Dispose();
        }
    }

    public void Dispose()
    {
        _lane?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _listener.Dispose();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _stream.Dispose();
        _input.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>A demand connection: the session's side runs <c>RunDemandAsync</c>, this side writes raw frames.</summary>
    private sealed class Lane : IAsyncDisposable
    {
        private readonly Socket _client;
        private readonly FrameConnection _server;
        private readonly Task _serving;
        private readonly FrameReader _reader = new(Transport);
        // One frame of the largest size the transport allows; shared, since one lane is open at a time
        // and a rejected request reopens it (a buffer per lane would cost 9 MiB per exec).
        private static readonly byte[] Inbox = new byte[Frame.PrefixSize + Transport.MaxHeaderBytes + Transport.MaxPayloadBytes];
        private int _inboxLength;
        private uint _sequence;

        private Lane(Socket client, FrameConnection server, Task serving)
        {
            _client = client;
            _server = server;
            _serving = serving;
        }

        public static async Task<Lane> OpenAsync(Socket listener, DownstreamSession session)
        {
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            var accept = listener.AcceptAsync();
            await client.ConnectAsync(listener.LocalEndPoint!);
            var server = new FrameConnection(new SocketTransport(await accept, Transport), StreamClone.Shared.Protocol.Lane.Demand, Transport, NullLogger.Instance);
            return new Lane(client, server, session.RunDemandAsync(server));
        }

        /// <summary>A frame around header bytes as they are (FrameWriter would re-encode a typed message).</summary>
        public async Task SendAsync(byte[] header)
        {
            var frame = new byte[Frame.PrefixSize + header.Length];
            BinaryPrimitives.WriteUInt16LittleEndian(frame, Frame.Magic);
            frame[2] = (byte)FrameType.DemandRequest;
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(4), (uint)header.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(12), _sequence++);
            header.CopyTo(frame, Frame.PrefixSize);
            var crc = new Crc32();
            crc.Append(frame.AsSpan(0, 16));
            crc.Append(header);
            BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(16), crc.GetCurrentHashAsUInt32());
            try
            {
                await _client.SendAsync(frame, SocketFlags.None);
            }
            catch (SocketException)
            {
                // The session closed the lane; ReceiveAsync reports how.
            }
        }

        /// <summary>The next frame (type, header, payload), or a null type once the session ended the lane with an Error frame or a close.</summary>
        public async Task<(FrameType? Type, byte[] Header, byte[] Payload)> ReceiveAsync()
        {
            while (true)
            {
                var buffer = new ReadOnlySequence<byte>(Inbox, 0, _inboxLength);
                if (_reader.TryRead(ref buffer, out var frame))
                {
                    var result = (frame.Type == FrameType.Error ? null : (FrameType?)frame.Type, frame.Header.ToArray(), frame.Payload.ToArray());
                    var consumed = _inboxLength - (int)buffer.Length;
                    Inbox.AsSpan(consumed, _inboxLength - consumed).CopyTo(Inbox);
                    _inboxLength -= consumed;
                    return result;
                }
                var receive = _client.ReceiveAsync(Inbox.AsMemory(_inboxLength), SocketFlags.None).AsTask();
                if (await Task.WhenAny(receive, _serving) == _serving && !receive.IsCompleted)
                {
                    // The session's loop ended without answering: an unexpected exception surfaces here.
                    await _serving;
                    return (null, [], []);
                }
                int n;
                try
                {
                    n = await receive;
                }
                catch (SocketException)
                {
                    n = 0;
                }
                if (n == 0)
                {
                    await _serving;
                    return (null, [], []);
                }
                _inboxLength += n;
            }
        }

        public async ValueTask DisposeAsync()
        {
            _client.Dispose();
            await _server.DisposeAsync();
            try
            {
                await _serving;
            }
            catch (Exception ex) when (ex is ProtocolViolationException or IOException or OperationCanceledException)
            {
            }
        }
    }
}
