using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using StreamClone.Shared.Protocol;

namespace StreamClone.Shared.Transport;

/// <summary>
/// The byte stream under a <see cref="FrameConnection"/>: a pipe pair plus what the connection needs to
/// know about the thing that moves the bytes (a socket, a TLS stream, or an in-memory pipe for tests).
/// The frame layer writes into <see cref="Output"/> and reads from <see cref="Input"/>; loops below
/// move bytes between those pipes and the wire, each obeying its pipe's pause threshold, so backpressure
/// reaches the producer the same way over every transport.
/// </summary>
public abstract class DuplexTransport : IDuplexPipe, IAsyncDisposable
{
    public abstract PipeReader Input { get; }

    public abstract PipeWriter Output { get; }

    /// <summary>Bytes handed to the wire (for TLS: counted at the socket, records and handshake included).</summary>
    public abstract long BytesSent { get; }

    /// <summary>Bytes taken from the wire (for TLS: counted at the socket).</summary>
    public abstract long BytesReceived { get; }

    /// <summary>
    /// Bytes of <see cref="Output"/> handed on below the pipe (to the kernel or the TLS stream): once it
    /// reaches what the frame writer wrote, a final Error frame is out and closing will not drop it.
    /// </summary>
    public virtual long BytesDelivered => BytesSent;

    /// <summary>The peer's address, or null in memory.</summary>
    public abstract EndPoint? RemoteEndPoint { get; }

    /// <summary>The certificate the peer proved it holds (TLS only; already accepted by the peer validator).</summary>
    public virtual X509Certificate2? RemoteCertificate => null;

    /// <summary>"127.0.0.1:40312" or "memory": the peer's address for logs.</summary>
    public virtual string RemoteAddress => RemoteEndPoint?.ToString() ?? "?";

    /// <summary>Socket options once the lane is known (no-op where there is no socket).</summary>
    public virtual void Tune(Lane lane, TransportOptions options)
    {
    }

    /// <summary>
    /// Stops both loops now: pending reads and flushes wake, the wire is shut in both directions. Never throws;
    /// called once, by <see cref="FrameConnection.Abort"/>.
    /// </summary>
    public abstract void Shutdown();

    public abstract ValueTask DisposeAsync();
}
