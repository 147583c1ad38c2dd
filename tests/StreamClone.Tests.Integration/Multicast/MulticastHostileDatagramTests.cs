using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using StreamClone.Shared.Protocol;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Multicast;

/// <summary>
/// A source multicasting to a sink (real processes, each in its own namespace of one segment) while a third host
/// records datagrams off the group and sends them back replayed, altered (forged), from another sender id (foreign)
/// and as garbage (malformed): the sink drops and counts each kind and ends identical.
/// </summary>
public sealed partial class MulticastHostileDatagramTests
{
    private static readonly IPEndPoint Group = new(IPAddress.Parse("239.77.9.1"), 7101);

    [Fact]
    public async Task Forged_malformed_foreign_and_replayed_datagrams_are_dropped_and_counted_and_the_sink_ends_identical()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", 16 << 20, seed: 94);
        using var segment = NamespaceSegment.Create(3);
        var config = dir.File("xdg");
        Directory.CreateDirectory(config);
        var environment = new Dictionary<string, string?> { ["XDG_CONFIG_HOME"] = config };
        // The injector listens before the source sends: it records real datagrams to replay and alter.
        using var listener = segment.RunIn(3, () => OpenGroupSocket());
        await using var source = RunningProcess.Start(new ProcessCommand("ip", ["netns", "exec", segment.Host(1), .. Cli,
            "source", "--image", image, "--listen", $"{NamespaceSegment.AddressOf(1)}:7000", "--sessions", "1", "--json",
            "--multicast", Group.ToString(), "--interface", "eth0", "--max-rate", "2000000", "--log-level", "Information"])
        { Name = "source", Environment = environment });
        // Logged once it listens (and its multicast socket is open).
        await source.WaitForLineAsync(OutputStream.Stderr, line => line.Contains("Multicasting the encoded stream", StringComparison.Ordinal), TimeSpan.FromSeconds(60), ct);
        await using var sink = RunningProcess.Start(new ProcessCommand("ip", ["netns", "exec", segment.Host(2), .. Cli,
            "sink", "--connect", $"{NamespaceSegment.AddressOf(1)}:7000", "--store", dir.File("store"), "--json",
            "--multicast-interface", "eth0", "--log-level", "Information"])
        { Name = "sink", Environment = environment });

        // Take a few real datagrams off the group, then send the hostile kinds back while the stream runs. Only datagrams the
        // sink's socket heard can come back as replays: the sink logs its join once its socket is open, and the sender may
        // start before that (a datagram recorded by heard-count alone was one the sink never had, 1 run in 4: "duplicate").
        await sink.WaitForLineAsync(OutputStream.Stderr, line => line.Contains("joined on eth0", StringComparison.Ordinal), TimeSpan.FromSeconds(60), ct);
        var recorded = new List<byte[]>();
        var buffer = new byte[2048];
        // Past the ones already queued at our listener when the line appeared: those may predate the sink's socket.
        while (listener.Available > 0)
        {
            listener.Receive(buffer);
        }
        for (var heard = 0; recorded.Count < 8; heard++)
        {
            var n = await listener.ReceiveAsync(buffer, ct).AsTask().WaitAsync(TimeSpan.FromSeconds(60), ct);
            if (heard >= 40)
            {
                recorded.Add(buffer[..n]);
            }
        }
        using var injector = segment.RunIn(3, () => OpenGroupSocket());
        foreach (var datagram in recorded)
        {
            await injector.SendToAsync(datagram, Group, ct);                     // replayed
            // A counter never used (so not a replay) in an altered datagram: only the key holder can make a valid tag.
            var forged = (byte[])datagram.Clone();
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(forged.AsSpan(32, 8), 1UL << 40);
            forged[^20] ^= 0x5A;
            await injector.SendToAsync(forged, Group, ct);
            var foreign = (byte[])datagram.Clone();
            foreign[4] ^= 0xFF;                                                    // another sender id
            await injector.SendToAsync(foreign, Group, ct);
            await injector.SendToAsync(new byte[] { 0x53, 0x43, 9, 9, 1, 2, 3 }, Group, ct); // truncated garbage
        }

        Assert.Equal(0, await sink.WaitAsync(TimeSpan.FromSeconds(120), ct));
        Assert.Equal(0, await source.WaitAsync(TimeSpan.FromSeconds(30), ct));
        var log = string.Join('\n', sink.StderrLines);
        var summary = DropSummary().Match(log);
        Assert.True(summary.Success, log);
        foreach (var kind in new[] { "malformed", "forged", "replayed", "foreign" })
        {
            var count = Regex.Match(summary.Value, $"{kind} (\\d+)");
            Assert.True(count.Success && long.Parse(count.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= 1, $"{kind} not counted: {summary.Value}");
        }
        AssertStoreHolds(dir.File("store"), image);
    }

    [Fact]
    public async Task Nacks_for_batches_that_do_not_exist_are_ignored_and_counted_and_the_source_keeps_serving()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        var image = await TestImages.MemoryAsync(dir, "in.img", 8 << 20, seed: 95);
        using var segment = NamespaceSegment.Create(3);
        var config = dir.File("xdg");
        Directory.CreateDirectory(config);
        var environment = new Dictionary<string, string?> { ["XDG_CONFIG_HOME"] = config };
        // Plain TCP (--insecure) so a hand-made control client can speak the frames.
        await using var source = RunningProcess.Start(new ProcessCommand("ip", ["netns", "exec", segment.Host(1), .. Cli,
            "source", "--image", image, "--listen", $"{NamespaceSegment.AddressOf(1)}:7000", "--sessions", "1", "--json", "--insecure",
            "--multicast", Group.ToString(), "--interface", "eth0", "--max-rate", "4000000", "--log-level", "Information"])
        { Name = "source", Environment = environment });
        await source.WaitForLineAsync(OutputStream.Stderr, line => line.Contains("Multicasting the encoded stream", StringComparison.Ordinal), TimeSpan.FromSeconds(60), ct);

        var socket = segment.RunIn(2, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true });
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Parse(NamespaceSegment.AddressOf(1)), 7000), ct);
        await using (var control = RawFramePeer.Wrap(socket))
        {
            await control.SendHelloAsync("bogus-nacker", ct: ct);
            await control.ReadHeaderAsync<HelloMessage>(FrameType.Hello, ct);
            await control.ReadHeaderAsync<SnapshotOfferMessage>(FrameType.SnapshotOffer, ct);
            await control.SendAsync(FrameType.Inventory, new InventoryMessage { Count = 0, Last = true, WantsMulticast = true }, ct: ct);
            var join = await control.ReceiveAsync<MulticastJoinMessage>(FrameType.MulticastJoin, ct);
            Assert.Equal(1, join.FirstSequence);
            await control.SendAsync(FrameType.MulticastReport, new MulticastReportMessage
            {
                NextSequence = 1,
                Nacks = [new MulticastNack { Sequence = 1_000_000 }, new MulticastNack { Sequence = 999_999, Missing = [0xFF, 0xFF] }],
            }, ct: ct);
            await source.WaitForLineAsync(OutputStream.Stderr, line => line.Contains("NACKs of batches never sent", StringComparison.Ordinal), TimeSpan.FromSeconds(30), ct);
        }

        // The source still serves: a real multicast sink gets the snapshot, identical.
        await using var sink = RunningProcess.Start(new ProcessCommand("ip", ["netns", "exec", segment.Host(3), .. Cli,
            "sink", "--connect", $"{NamespaceSegment.AddressOf(1)}:7000", "--store", dir.File("store"), "--json", "--insecure",
            "--multicast-interface", "eth0"])
        { Name = "sink", Environment = environment });
        var exit = await sink.WaitAsync(TimeSpan.FromSeconds(120), ct);
        Assert.True(exit == 0, string.Join('\n', sink.StderrLines.TakeLast(10)) + "\n--- source ---\n" + string.Join('\n', source.StderrLines.TakeLast(10)));
        // The source ends after the real sink stored the snapshot; it exits 1 because the hand-made client's session failed.
        Assert.Equal(1, await source.WaitAsync(TimeSpan.FromSeconds(30), ct));
        Assert.Contains("\"completed\":true", source.LastLine, StringComparison.Ordinal);
        AssertStoreHolds(dir.File("store"), image);
    }

    [Fact]
    public async Task A_multicast_receiver_that_stops_reading_is_moved_to_tcp_and_still_ends_identical()
    {
        var ct = TestContext.Current.CancellationToken;
        using var dir = new TempDir();
        // 256 batches at 4 MB/s: seconds of stream, far more than the 64-batch lag allowed.
        var image = await TestImages.MemoryAsync(dir, "in.img", 64 << 20, seed: 96);
        using var segment = NamespaceSegment.Create(2);
        var config = dir.File("xdg");
        Directory.CreateDirectory(config);
        var environment = new Dictionary<string, string?> { ["XDG_CONFIG_HOME"] = config };
        await using var source = RunningProcess.Start(new ProcessCommand("ip", ["netns", "exec", segment.Host(1), .. Cli,
            "source", "--image", image, "--listen", $"{NamespaceSegment.AddressOf(1)}:7000", "--sessions", "1", "--json",
            "--multicast", Group.ToString(), "--interface", "eth0", "--max-rate", "4000000", "--log-level", "Information"])
        { Name = "source", Environment = environment });
        await source.WaitForLineAsync(OutputStream.Stderr, line => line.Contains("Multicasting the encoded stream", StringComparison.Ordinal), TimeSpan.FromSeconds(60), ct);
        await using var sink = RunningProcess.Start(new ProcessCommand("ip", ["netns", "exec", segment.Host(2), .. Cli,
            "sink", "--connect", $"{NamespaceSegment.AddressOf(1)}:7000", "--store", dir.File("store"), "--json",
            "--multicast-interface", "eth0", "--log-level", "Information"])
        { Name = "sink", Environment = environment });
        await sink.WaitForLineAsync(OutputStream.Stderr, line => line.Contains("joined on eth0", StringComparison.Ordinal), TimeSpan.FromSeconds(60), ct);

        // The fault: the receiver stops reading (the whole process, stopped) for 3 s while the group goes on.
        // `ip netns exec` execs the CLI, so the process started is the sink itself.
        await ProcessRunner.RunAsync(new ProcessCommand("kill", ["-STOP", sink.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]), ct);
        await Task.Delay(TimeSpan.FromSeconds(3), ct);
        await ProcessRunner.RunAsync(new ProcessCommand("kill", ["-CONT", sink.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]), ct);

        var exit = await sink.WaitAsync(TimeSpan.FromSeconds(120), ct);
        Assert.True(exit == 0, string.Join('\n', sink.StderrLines.TakeLast(10)));
        Assert.Equal(0, await source.WaitAsync(TimeSpan.FromSeconds(30), ct));
        Assert.Contains(sink.StderrLines, line => line.Contains("multicast ended, TCP from batch", StringComparison.Ordinal));
        AssertStoreHolds(dir.File("store"), image);
    }

    private static string[] Cli => ["dotnet", Path.Combine(AppContext.BaseDirectory, "streamclone.dll")];

    private static Socket OpenGroupSocket()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(new IPEndPoint(IPAddress.Any, Group.Port));
        socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.AddMembership, new MulticastOption(Group.Address, IPAddress.Parse(NamespaceSegment.AddressOf(3))));
        socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface, IPAddress.Parse(NamespaceSegment.AddressOf(3)).GetAddressBytes());
        return socket;
    }

    [GeneratedRegex("multicast ended: .*dropped: [^\\n]*")]
    private static partial Regex DropSummary();

    /// <summary>Some object file in the sink's store is byte for byte the image (the store's layout is its own business).</summary>
    private static void AssertStoreHolds(string store, string image)
    {
        var expected = File.ReadAllBytes(image);
        var stored = Directory.EnumerateFiles(store, "*", SearchOption.AllDirectories).Where(f => new FileInfo(f).Length == expected.Length).ToList();
        Assert.Contains(stored, f => File.ReadAllBytes(f).AsSpan().SequenceEqual(expected));
    }
}
