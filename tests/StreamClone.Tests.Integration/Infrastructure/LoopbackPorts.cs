using System.Net;
using System.Net.Sockets;

namespace StreamClone.Tests.Integration.Infrastructure;

public static class LoopbackPorts
{
    /// <summary>A loopback port nothing listens on right now, for servers that cannot bind port 0 and report it (HttpListener).</summary>
    public static int Free()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
