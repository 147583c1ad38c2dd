using System.CommandLine;
using System.Net;
using StreamClone.Perf;
using StreamClone.Shared.Fanout;

namespace StreamClone.Host.Commands;

/// <summary>
/// <c>--multicast GROUP:PORT --interface IF [--min-rate R] [--max-rate R] [--multicast-receivers N] [--multicast-wait S]</c>:
/// a node that feeds children (source, relay) also multicasts its encoded stream to those that ask for it
/// (<c>sink --multicast-interface</c>). Spelled once here; <see cref="MulticastFanout.Attach"/> checks the values.
/// </summary>
internal sealed class MulticastSendOptions
{
    public Option<string?> Group { get; } = new("--multicast")
    {
        Description = "Also multicast the encoded stream to this IPv4 group (GROUP:PORT, AES-GCM, key per snapshot over each receiver's mutual-TLS lane) for children that ask for it (sink --multicast-interface).",
    };

    public Option<string?> Interface { get; } = new("--interface") { Description = "With --multicast: the interface on the receivers' segment, by name." };

    public Option<string> MinRate { get; } = new("--min-rate")
    {
        Description = "With --multicast: floor of the send rate in bytes/s (e.g. 1M).",
        DefaultValueFactory = _ => SizeParser.Format(new MulticastFanoutOptions().MinRateBytesPerSecond),
    };

    public Option<string> MaxRate { get; } = new("--max-rate")
    {
        Description = "With --multicast: ceiling of the send rate in bytes/s (e.g. 12M for 100 Mbit/s).",
        DefaultValueFactory = _ => SizeParser.Format(new MulticastFanoutOptions().MaxRateBytesPerSecond),
    };

    public Option<int> Receivers { get; } = new("--multicast-receivers")
    {
        Description = "With --multicast: wait for this many receivers to join (up to --multicast-wait seconds after the first) before sending.",
        DefaultValueFactory = _ => new MulticastFanoutOptions().StartAfterReceivers,
    };

    public Option<double> Wait { get; } = new("--multicast-wait")
    {
        Description = "With --multicast: longest wait for --multicast-receivers, seconds.",
        DefaultValueFactory = _ => new MulticastFanoutOptions().StartTimeout.TotalSeconds,
    };

    public IEnumerable<Option> All => [Group, Interface, MinRate, MaxRate, Receivers, Wait];

    /// <summary>The fan-out options, or null without --multicast.</summary>
    public MulticastFanoutOptions? Resolve(ParseResult result)
    {
        if (result.GetValue(Group) is not { } group)
        {
            return null;
        }
        var endPoint = HostServices.ParseEndPoint(group);
        if (!IsMulticast(endPoint.Address))
        {
            throw new FormatException($"--multicast '{group}' is not GROUP:PORT with a multicast group address");
        }
        return new MulticastFanoutOptions
        {
            Group = endPoint.Address,
            Port = endPoint.Port,
            Interface = result.GetValue(Interface) is { Length: > 0 } name ? name
                : throw new ArgumentException("--multicast needs --interface IF (the interface on the receivers' segment)"),
            MinRateBytesPerSecond = SizeParser.Parse(result.GetValue(MinRate)!),
            MaxRateBytesPerSecond = SizeParser.Parse(result.GetValue(MaxRate)!),
            StartAfterReceivers = result.GetValue(Receivers),
            StartTimeout = TimeSpan.FromSeconds(result.GetValue(Wait)),
        };
    }

    private static bool IsMulticast(IPAddress address) => address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
        ? (address.GetAddressBytes()[0] & 0xF0) == 0xE0
        : address.IsIPv6Multicast;
}
