using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using StreamClone.Processes;

namespace StreamClone.Perf;

/// <summary>
/// The comparison StreamClone has to beat: native zstd piped through socat over loopback.
/// <code>
/// receiver: socat -u TCP-LISTEN:PORT,reuseaddr,bind=127.0.0.1 STDOUT | dd bs=1M 2&gt;COUNT | zstd -d -c &gt; OUT
/// sender:   zstd -LEVEL -T2 -c INPUT | socat -u STDIN TCP:127.0.0.1:PORT
/// </code>
/// dd only counts the bytes that crossed the socket (its summary line); it copies the compressed
/// stream, about a third of the image, which costs far less than zstd on either side. Wall time
/// runs from starting the sender until the receiver has written the last byte of OUT.
/// </summary>
public static partial class NativeZstdBaseline
{
    private static readonly TimeSpan ListenTimeout = TimeSpan.FromSeconds(10);
    private const int ListenAttempts = 3;

    /// <param name="input">The image to send.</param>
    /// <param name="level">zstd level, as for StreamClone's batches: 1..22, or -1..-7 for zstd's fast levels (--fast=N).</param>
    /// <param name="threads">zstd -T: 2 matches the machine this is measured on.</param>
    /// <param name="workDirectory">Where the received copy goes (needs the image's size free); default the temp directory.</param>
    /// <param name="ct">Kills the pipeline.</param>
    public static async Task<NativeBaselineResult> RunAsync(string input, int level = 1, int threads = 2,
        string? workDirectory = null, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(level, -7);
        ArgumentOutOfRangeException.ThrowIfZero(level);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(level, 22);
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        if (!File.Exists(input))
        {
            throw new FileNotFoundException("baseline input not found", input);
        }
        ToolInstaller.EnsureAptPackages("zstd", "socat");

        var dir = Directory.CreateDirectory(Path.Combine(workDirectory ?? Path.GetTempPath(), $"streamclone-native-{Guid.NewGuid():N}"));
        var output = Path.Combine(dir.FullName, "out.img");
        var count = Path.Combine(dir.FullName, "count.txt");
        RunningProcess? receiver = null, sender = null;
        try
        {
            // The port comes from a probe socket that is closed before socat binds it, so another
            // process on this shared machine can take it in between: then socat exits, and we retry.
            int port = 0;
            for (var attempt = 1; ; attempt++)
            {
                port = FreeLoopbackPort();
                receiver = StartShell(
                    $"socat -u TCP-LISTEN:{port},reuseaddr,bind=127.0.0.1 STDOUT | dd bs=1M 2>{Quote(count)} | zstd -d -q -c > {Quote(output)}");
                try
                {
                    await WaitUntilListeningAsync(port, receiver, ct);
                    break;
                }
                catch (InvalidOperationException) when (attempt < ListenAttempts)
                {
                    await receiver.DisposeAsync();
                    receiver = null;
                }
            }

            var stopwatch = Stopwatch.StartNew();
            var levelFlag = level < 0 ? $"--fast={-level}" : level > 19 ? $"--ultra -{level}" : $"-{level}";
            sender = StartShell($"zstd {levelFlag} -T{threads} -q -c {Quote(input)} | socat -u STDIN TCP:127.0.0.1:{port}");
            if (await sender.Exited.WaitAsync(ct) != 0)
            {
                // The receiver would wait for a connection forever; the finally block kills it.
                throw new InvalidOperationException($"native sender failed (exit {sender.ExitCode}): {sender.OutputTail()}");
            }
            await receiver.Exited.WaitAsync(ct);
            var seconds = stopwatch.Elapsed.TotalSeconds;
            if (receiver.ExitCode != 0)
            {
                throw new InvalidOperationException($"native receiver failed (exit {receiver.ExitCode}): {receiver.OutputTail()}");
            }

            var inputBytes = new FileInfo(input).Length;
            var wireBytes = ParseDdBytes(await File.ReadAllTextAsync(count, ct));
            var identical = await FileCompare.SameContentAsync(input, output, ct);
            return new NativeBaselineResult(seconds, inputBytes * 8 / 1e6 / seconds, wireBytes, identical, level) { InputBytes = inputBytes };
        }
        finally
        {
            if (sender is not null)
            {
                await sender.DisposeAsync();
            }
            if (receiver is not null)
            {
                await receiver.DisposeAsync();
            }
            try
            {
                dir.Delete(recursive: true);
            }
            catch (IOException)
            {
                // Left in the temp directory; the run's result does not depend on it.
            }
        }
    }

    private static RunningProcess StartShell(string script) =>
        // bash for pipefail: a failing zstd in the middle of a pipe must fail the run.
        RunningProcess.Start(new ProcessCommand("bash", ["-o", "pipefail", "-c", script])
        {
            // dd's summary line is parsed; keep it in the C locale.
            Environment = new Dictionary<string, string?> { ["LC_ALL"] = "C" },
        });

    /// <summary>
    /// socat listens once and exits after its first connection, so a probe connect would use it
    /// up; instead look for the socket in LISTEN state (st 0A) in /proc/net/tcp.
    /// </summary>
    private static async Task WaitUntilListeningAsync(int port, RunningProcess receiver, CancellationToken ct)
    {
        var local = $"0100007F:{port:X4}";
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < ListenTimeout)
        {
            if (receiver.HasExited)
            {
                throw new InvalidOperationException($"socat receiver exited with {receiver.ExitCode} before listening on port {port}: {receiver.OutputTail()}");
            }
            foreach (var line in await File.ReadAllLinesAsync("/proc/net/tcp", ct))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length > 3 && fields[1] == local && fields[3] == "0A")
                {
                    return;
                }
            }
            // socat has no "listening" event to await (nor a port file): this poll is bounded by ListenTimeout.
            await Task.WhenAny(receiver.Exited, Task.Delay(10, ct));
            ct.ThrowIfCancellationRequested();
        }
        throw new TimeoutException($"socat did not listen on 127.0.0.1:{port} within {ListenTimeout.TotalSeconds} s");
    }

    private static int FreeLoopbackPort()
    {
        // Ask the kernel for a free ephemeral port; socat binds it a moment later (reuseaddr).
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    private static long ParseDdBytes(string ddSummary)
    {
        // "123456 bytes (123 kB, 121 KiB) copied, 0.01 s, 12 MB/s"
        var match = DdBytes().Match(ddSummary);
        return match.Success
            ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture)
            : throw new InvalidOperationException($"could not read the byte count from dd: {ddSummary.Trim()}");
    }

    private static string Quote(string path) => "'" + path.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    [GeneratedRegex(@"^(\d+) bytes", RegexOptions.Multiline)]
    private static partial Regex DdBytes();
}
