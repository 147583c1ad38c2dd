using System.Diagnostics;
using System.Runtime.InteropServices;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>
/// One Ethernet segment of test hosts, each a network namespace (../shared/notes/test-hosts-in-namespaces.md): a bridge
/// in its own namespace with snooping off (it floods multicast like an unmanaged switch), and per host a veth pair whose
/// host end is eth0 with 10.77.0.N/24 (brd +) and a 224.0.0.0/4 route. Nothing touches the root namespace. Names are
/// unique per instance; <see cref="Dispose"/> deletes every namespace (and with them the veths and nft tables), also
/// after a failed setup. Code runs "on" a host through <see cref="RunIn{T}"/>: a socket belongs to the namespace of the
/// thread that creates it, so a sender or receiver constructed there uses that host's interfaces from any thread after.
/// </summary>
public sealed partial class NamespaceSegment : IDisposable
{
    private const int CloneNewNet = 0x40000000;
    private readonly List<string> _namespaces = [];

    private NamespaceSegment(string prefix, int hosts)
    {
        Prefix = prefix;
        Hosts = hosts;
    }

    public string Prefix { get; }
    public int Hosts { get; }

    public string Bridge => $"{Prefix}-br";

    /// <summary>The namespace of host <paramref name="host"/> (1-based).</summary>
    public string Host(int host) => $"{Prefix}-h{host}";

    public static string AddressOf(int host) => $"10.77.0.{host}";

    public static NamespaceSegment Create(int hosts)
    {
        var segment = new NamespaceSegment($"sct{Guid.NewGuid().ToString("N")[..8]}", hosts);
        try
        {
            segment.Add(segment.Bridge);
            Ip("-n", segment.Bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0");
            Ip("-n", segment.Bridge, "link", "set", "br0", "up");
            for (var h = 1; h <= hosts; h++)
            {
                var ns = segment.Host(h);
                segment.Add(ns);
                Ip("-n", segment.Bridge, "link", "add", $"vr{h}", "type", "veth", "peer", "name", "eth0", "netns", ns);
                Ip("-n", segment.Bridge, "link", "set", $"vr{h}", "master", "br0", "up");
                Ip("-n", ns, "addr", "add", $"{AddressOf(h)}/24", "brd", "+", "dev", "eth0");
                Ip("-n", ns, "link", "set", "lo", "up");
                Ip("-n", ns, "link", "set", "eth0", "multicast", "on", "up");
                Ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0");
            }
            return segment;
        }
        catch
        {
            segment.Dispose();
            throw;
        }
    }

    private void Add(string ns)
    {
        Ip("netns", "add", ns);
        _namespaces.Add(ns);
    }

    /// <summary>Drops <paramref name="percent"/>% of the UDP arriving at <paramref name="host"/> (nftables random drop: this
    /// kernel has no netem). Returns a reader of the rule's packet counter.</summary>
    public Func<long> DropIncomingUdp(int host, int percent)
    {
        var ns = Host(host);
        Run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "loss");
        Run("ip", "netns", "exec", ns, "nft", "add chain inet loss input { type filter hook input priority 0 ; }");
        Run("ip", "netns", "exec", ns, "nft", $"add rule inet loss input meta l4proto udp numgen random mod 100 < {percent} counter drop");
        return () =>
        {
            var listing = Run("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "loss");
            var at = listing.IndexOf("packets ", StringComparison.Ordinal);
            return at < 0 ? throw new InvalidOperationException($"no counter in: {listing}")
                : long.Parse(listing[(at + 8)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        };
    }

    /// <summary>Runs <paramref name="create"/> on a fresh thread that has entered host <paramref name="host"/>'s network
    /// namespace (setns), and returns its result. The thread ends afterwards; nothing else runs in the namespace.</summary>
    public T RunIn<T>(int host, Func<T> create)
    {
        var path = $"/run/netns/{Host(host)}";
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var handle = File.OpenHandle(path);
                if (setns((int)handle.DangerousGetHandle(), CloneNewNet) != 0)
                {
                    throw new InvalidOperationException($"setns({path}) failed: errno {Marshal.GetLastPInvokeError()}");
                }
                result = create();
            }
            catch (Exception e)
            {
                failure = e;
            }
        })
        { Name = $"netns {Host(host)}" };
        thread.Start();
        thread.Join();
        return failure is null ? result : throw new InvalidOperationException($"in {Host(host)}: {failure.Message}", failure);
    }

    public void Dispose()
    {
        for (var i = _namespaces.Count - 1; i >= 0; i--)
        {
            try
            {
                Ip("netns", "del", _namespaces[i]);
            }
            catch (InvalidOperationException)
            {
                // Keep deleting the others; a leftover is visible in `ip netns` under this test's unique prefix.
            }
        }
        _namespaces.Clear();
    }

    private static void Ip(params string[] args) => Run("ip", args);

    private static string Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {file}");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode == 0
            ? output.GetAwaiter().GetResult()
            : throw new InvalidOperationException($"{file} {string.Join(' ', args)}: exit {process.ExitCode}: {error.Trim()}");
    }

    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    private static partial int setns(int fd, int nstype);
}
