using System.Net.Sockets;
using System.Text;
using StreamClone.Qemu;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// QMP replies and events, through <see cref="QmpClient"/>'s real receive path on a Unix socket. The
/// input's first line is the greeting; the rest is what the peer sends after the client's first command
/// (qmp_capabilities, id 1), and then the peer closes. So every input ends without a timeout: the
/// client either negotiates and sees the close, or fails with a typed error.
/// </summary>
internal sealed class QmpTarget : FuzzTarget, IDisposable
{
    // Far beyond FuzzLoop.HangLimit: a wait this long is reported as a hang, not as a timeout error.
    private static readonly QmpClientOptions Options = new() { GreetingTimeout = TimeSpan.FromSeconds(60), CommandTimeout = TimeSpan.FromSeconds(60), MaxLineBytes = 64 << 10 };
    private readonly string _directory;
    private readonly string _path;
    private readonly Socket _listener;

    public QmpTarget()
        : base("qmp", typeof(QmpProtocolException), typeof(QmpException))
    {
        _directory = FuzzScratch.For("qmp");
        Directory.CreateDirectory(_directory);
        _path = Path.Combine(_directory, "qmp.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(_path));
        _listener.Listen(1);
    }

    private const string Greeting =
        """{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}""";

    public override IReadOnlyList<byte[]> Dictionary { get; } =
    [
        .. new[] { "{", "}", "[", "]", "\"", ":", ",", "\r\n", "\n", "\"id\": 1", "\"id\": ", "\"return\": ", "\"error\": ", "\"event\": ",
            "\"class\": ", "\"desc\": ", "\"data\": ", "\"timestamp\": ", "\"seconds\": ", "\"microseconds\": ", "\"QMP\": ", "\"version\": ",
            "\"qemu\": ", "\"major\": ", "null", "true", "-1", "1e400", "9223372036854775808", "\"\\u0000\"", "\"\\ud800\"" }
            .Select(Encoding.UTF8.GetBytes),
    ];

    public override IEnumerable<byte[]> Seeds()
    {
        string[][] scripts =
        [
            [Greeting, """{"return": {}, "id": 1}"""],
            [Greeting, """{"error": {"class": "CommandNotFound", "desc": "The command qmp_capabilities has not been found"}, "id": 1}"""],
            [Greeting, """{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"""],
            [Greeting, """{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "STOP"}""", """{"return": {}, "id": 1}""",
                """{"timestamp": {"seconds": 1700000001, "microseconds": 7}, "event": "MIGRATION", "data": {"status": "completed"}}""",
                """{"timestamp": {"seconds": 1700000002, "microseconds": 9}, "event": "RESUME"}"""],
            ["""{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 8}}, "capabilities": []}}""", """{"return": {"status": "running"}, "id": 1}"""],
        ];
        return scripts.Select(lines => Encoding.UTF8.GetBytes(string.Join("\r\n", lines) + "\r\n"));
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        var newline = input.IndexOf((byte)'\n');
        var greeting = newline < 0 ? [.. input, (byte)'\n'] : input[..(newline + 1)].ToArray();
        var rest = newline < 0 ? [] : input[(newline + 1)..].ToArray();
        RunAsync(greeting, rest).GetAwaiter().GetResult();
    }

    private async Task RunAsync(byte[] greeting, byte[] rest)
    {
        var peer = ServeAsync(greeting, rest);
        try
        {
            await using var client = await QmpClient.ConnectAsync(_path, Options);
            await client.Completion;
            try
            {
                await foreach (var e in client.ReadEventsAsync())
                {
                    _ = e.ToString();
                    _ = e.GetString("status");
                }
            }
            catch (QmpProtocolException)
            {
                // The connection closed after the events: the normal end here.
            }
        }
        finally
        {
            await peer;
        }
    }

    /// <summary>Greets, waits for the first command line, sends the rest and closes.</summary>
    private async Task ServeAsync(byte[] greeting, byte[] rest)
    {
        using var connection = await _listener.AcceptAsync();
        var buffer = new byte[4096];
        try
        {
            await connection.SendAsync(greeting, SocketFlags.None);
            while (true)
            {
                var n = await connection.ReceiveAsync(buffer, SocketFlags.None);
                if (n == 0)
                {
                    return;
                }
                if (buffer.AsSpan(0, n).Contains((byte)'\n'))
                {
                    break;
                }
            }
            await connection.SendAsync(rest, SocketFlags.None);
            connection.Shutdown(SocketShutdown.Send);
            while (await connection.ReceiveAsync(buffer, SocketFlags.None) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // The client hung up first (it refused the greeting): nothing left to send.
        }
    }

    public void Dispose()
    {
        _listener.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
