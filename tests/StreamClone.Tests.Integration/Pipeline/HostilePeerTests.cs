using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Sink;
using StreamClone.Sink.Session;
using StreamClone.Sink.Store;
using StreamClone.Source;
using StreamClone.Source.Inputs;
using StreamClone.Source.Server;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>Peers that speak the wrong thing get a clear error frame and lose only their own connection.</summary>
public class HostilePeerTests
{
    private static async Task<ErrorMessage?> SendRawAsync(IPEndPoint server, byte[] bytes)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(server);
        await socket.SendAsync(bytes);
        var received = new ArrayBufferWriter<byte>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (true)
        {
            var memory = received.GetMemory(4096);
            var n = await socket.ReceiveAsync(memory, SocketFlags.None, timeout.Token);
            if (n == 0)
            {
                break;
            }
            received.Advance(n);
        }
        var sequence = new ReadOnlySequence<byte>(received.WrittenMemory);
        var reader = new FrameReader(TransportOptions.Default);
        while (reader.TryRead(ref sequence, out var frame))
        {
            if (frame.Type == FrameType.Error)
            {
                return frame.DecodeHeader<ErrorMessage>();
            }
        }
        return null;
    }

    private static byte[] Frame<T>(FrameType type, T header)
    {
        var output = new ArrayBufferWriter<byte>();
        new FrameWriter().Write(output, type, header, []);
        return output.WrittenSpan.ToArray();
    }

    [Fact]
    public async Task Unknown_versions_garbage_and_stray_demand_lanes_are_refused_and_the_source_serves_on()
    {
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "mem.img", 8 << 20, seed: 5);
        await using var input = ImageFileInput.Open([(image, ObjectKind.Memory)], 4096, "hostile-test");
        await using var server = new SourceServer(input, new SourceOptions(), TransportOptions.Default, NullLogger.Instance);
        var endPoint = server.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var serving = server.RunAsync(stop.Token);

        var future = await SendRawAsync(endPoint, Frame(FrameType.Hello, new HelloMessage { ProtocolVersion = 99, Role = "sink", SessionId = "x" }));
        Assert.Equal(ProtocolError.UnsupportedVersion, future?.Code);

        var garbage = await SendRawAsync(endPoint, "GET / HTTP/1.1\r\nHost: source\r\n\r\n"u8.ToArray());
        Assert.Equal(ProtocolError.BadMagic, garbage?.Code);

        var stray = await SendRawAsync(endPoint, Frame(FrameType.Hello, new HelloMessage { Role = "sink", Lane = Lane.Demand, SessionId = "nobody" }));
        Assert.Equal(ProtocolError.UnknownSession, stray?.Code);

        // After all that, a real sink still gets an identical copy.
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        await using var session = await SinkSession.ConnectAsync(endPoint, store, new SinkOptions(), TransportOptions.Default, NullLogger.Instance, stop.Token);
        await session.RunAsync();
        Assert.Equal(await File.ReadAllBytesAsync(image), await File.ReadAllBytesAsync(session.Snapshot.GetObjectPath(0)));

        await stop.CancelAsync();
        await serving;
    }
}
