using System.Net.Sockets;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>Moves a migration stream between a socket-pair end and a stream, as the pipeline's Source and Sink will.</summary>
internal static class SocketCopy
{
    /// <summary>Reads until the peer closes (QEMU closes its fd when the migration ends).</summary>
    public static async Task ReadToEndAsync(Socket socket, Stream destination)
    {
        var buffer = new byte[1 << 20];
        int n;
        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None)) > 0)
            await destination.WriteAsync(buffer.AsMemory(0, n));
    }

    /// <summary>Writes all of <paramref name="source"/>, then shuts the sending side so the reader sees EOF.</summary>
    public static async Task WriteAllAsync(Socket socket, Stream source)
    {
        var buffer = new byte[1 << 20];
        int n;
        while ((n = await source.ReadAsync(buffer)) > 0)
        {
            var chunk = buffer.AsMemory(0, n);
            while (!chunk.IsEmpty)
                chunk = chunk[await socket.SendAsync(chunk, SocketFlags.None)..];
        }
        socket.Shutdown(SocketShutdown.Send);
    }
}
