using System.Net.Sockets;
using System.Text;

namespace StreamClone.Tests.Unit.Qemu;

/// <summary>A bare Unix-socket listener for tests that must control every byte a QMP peer sends.</summary>
internal sealed class RawPeer : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly string _dir;
    private readonly List<Socket> _accepted = [];
    private readonly StringBuilder _pending = new();

    public RawPeer()
    {
        _dir = Directory.CreateTempSubdirectory("sc-rawqmp-").FullName;
        Path = System.IO.Path.Combine(_dir, "qmp.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(Path));
        _listener.Listen(1);
    }

    public string Path { get; }

    public async Task<Socket> AcceptAsync()
    {
        var s = await _listener.AcceptAsync();
        _accepted.Add(s);
        return s;
    }

    /// <summary>Next newline-terminated line the client sent (commands end in '\n').</summary>
    public async Task<string> ReadLineAsync(Socket socket)
    {
        var buffer = new byte[4096];
        while (true)
        {
            var text = _pending.ToString();
            var newline = text.IndexOf('\n', StringComparison.Ordinal);
            if (newline >= 0)
            {
                _pending.Remove(0, newline + 1);
                return text[..newline];
            }
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (n == 0)
                throw new EndOfStreamException("client closed");
            _pending.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }
    }

    public ValueTask DisposeAsync()
    {
        foreach (var s in _accepted)
            s.Dispose();
        _listener.Dispose();
        Directory.Delete(_dir, recursive: true);
        return ValueTask.CompletedTask;
    }
}
