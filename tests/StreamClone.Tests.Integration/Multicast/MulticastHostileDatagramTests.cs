using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
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

        // Take a few real datagrams off the group, then send the hostile kinds back while the stream runs.
        var recorded = new List<byte[]>();
        var buffer = new byte[2048];
        // Past the first ones: the sink may have opened its socket a moment after the sender started.
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
        var stored = Directory.EnumerateFiles(dir.File("store"), "*", SearchOption.AllDirectories)
            .Where(f => new FileInfo(f).Length == 16 << 20).ToList();
        Assert.Contains(stored, f => File.ReadAllBytes(f).AsSpan().SequenceEqual(File.ReadAllBytes(image)));
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
}
