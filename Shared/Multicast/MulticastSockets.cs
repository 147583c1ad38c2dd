using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace StreamClone.Shared.Multicast;

/// <summary>The socket setup both ends share. Sockets belong to the network namespace of the thread that creates them.</summary>
internal static partial class MulticastSockets
{
    private const int IpProtocolIp = 0;
    private const int IpMulticastAll = 49;
    private const int SolSocket = 1;
    private const int SoRcvBufForce = 33;

    /// <summary>The interface index for <paramref name="name"/> in this thread's network namespace, or a clear error.</summary>
    public static int InterfaceIndex(string name)
    {
        var index = if_nametoindex(name);
        return index == 0
            ? throw new ArgumentException($"no network interface named '{name}'", nameof(name))
            : (int)index;
    }

    public static Socket OpenSender(string interfaceName, int ttl)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastTimeToLive, ttl);
            // On: a relay that also receives on this group hears itself; receivers filter their own sender id.
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastLoopback, true);
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface,
                IPAddress.HostToNetworkOrder(InterfaceIndex(interfaceName)));
            socket.Bind(new IPEndPoint(IPAddress.Any, 0));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Bound to the group address itself and with IP_MULTICAST_ALL off, so only this group's datagrams arrive (Linux
    /// otherwise delivers every joined group on the port). The receive buffer is raised to
    /// <paramref name="receiveBufferBytes"/>: SO_RCVBUFFORCE when we hold CAP_NET_ADMIN, else SO_RCVBUF (capped by
    /// net.core.rmem_max); returns the size the kernel granted.
    /// </summary>
    public static Socket OpenReceiver(IPAddress group, int port, string interfaceName, int receiveBufferBytes, out int granted)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.SetRawSocketOption(IpProtocolIp, IpMulticastAll, BitConverter.GetBytes(0));
            try
            {
                socket.SetRawSocketOption(SolSocket, SoRcvBufForce, BitConverter.GetBytes(receiveBufferBytes));
            }
            catch (SocketException)
            {
                socket.ReceiveBufferSize = receiveBufferBytes;
            }
            granted = socket.ReceiveBufferSize;
            socket.Bind(new IPEndPoint(group, port));
            socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.AddMembership,
                new MulticastOption(group, InterfaceIndex(interfaceName)));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    [LibraryImport("libc", EntryPoint = "if_nametoindex", StringMarshalling = StringMarshalling.Utf8)]
    private static partial uint if_nametoindex(string name);
}
