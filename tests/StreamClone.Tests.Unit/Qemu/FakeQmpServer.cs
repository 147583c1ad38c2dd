using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace StreamClone.Tests.Unit.Qemu;

/// <summary>
/// A scripted QMP peer on a real Unix socket. It greets (unless told not to), answers
/// qmp_capabilities, and hands every later command to <see cref="OnCommand"/>, which writes whatever
/// lines the test wants (events, replies with or without id, garbage), in any order.
/// </summary>
internal sealed class FakeQmpServer : IAsyncDisposable
{
    public const string Greeting =
        """{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}""";

    private readonly Socket _listener;
    private readonly string _dir;
    private readonly Task _serveTask;
    private readonly CancellationTokenSource _stop = new();

    public FakeQmpServer(string? greeting = Greeting)
    {
        _dir = Directory.CreateTempSubdirectory("sc-fakeqmp-").FullName;
        Path = System.IO.Path.Combine(_dir, "qmp.sock");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(Path));
        _listener.Listen(1);
        GreetingText = greeting;
        _serveTask = ServeAsync();
    }

    public string Path { get; }

    public string? GreetingText { get; }

    /// <summary>Commands received after qmp_capabilities, in order.</summary>
    public List<JsonElement> Received { get; } = [];

    /// <summary>Called per command with (command, id as raw JSON, writer). Default: <c>{"return": {}}</c>.</summary>
    public Func<string, string, Func<string, Task>, Task> OnCommand { get; set; } =
        (_, id, send) => send($$"""{"return": {}, "id": {{id}}}""");

    /// <summary>Set once the client has sent qmp_capabilities first.</summary>
    public TaskCompletionSource Negotiated { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private async Task ServeAsync()
    {
        using var client = await _listener.AcceptAsync(_stop.Token);
        async Task Send(string line)
        {
            var bytes = Encoding.UTF8.GetBytes(line + "\r\n");
            await client.SendAsync(bytes, SocketFlags.None);
        }
        if (GreetingText is not null)
            await Send(GreetingText);

        var buffer = new byte[65536];
        var pending = new StringBuilder();
        while (!_stop.IsCancellationRequested)
        {
            int n;
            try
            {
                n = await client.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException)
            {
                return;
            }
            if (n == 0)
                return;
            pending.Append(Encoding.UTF8.GetString(buffer, 0, n));
            int newline;
            while ((newline = pending.ToString().IndexOf('\n', StringComparison.Ordinal)) >= 0)
            {
                var line = pending.ToString(0, newline);
                pending.Remove(0, newline + 1);
                var root = JsonDocument.Parse(line).RootElement.Clone();
                var command = root.GetProperty("execute").GetString()!;
                var id = root.GetProperty("id").GetRawText();
                if (command == "qmp_capabilities")
                {
                    Negotiated.TrySetResult();
                    await Send($$"""{"return": {}, "id": {{id}}}""");
                    continue;
                }
                lock (Received)
                    Received.Add(root);
                await OnCommand(command, id, Send);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        try
        {
            await _serveTask;
        }
        catch (Exception)
        {
            // The scripted peer may end in any state; the tests assert on the client.
        }
        _stop.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
