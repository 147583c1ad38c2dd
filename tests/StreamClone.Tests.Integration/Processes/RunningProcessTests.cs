using System.Globalization;

namespace StreamClone.Tests.Integration.Processes;

/// <summary>The one process runner, on real children (sh, cat, sleep): failures as one line, output lines awaited,
/// SIGKILL of the whole tree, SIGTERM before SIGKILL, stdin, and the port file a server child writes.</summary>
public class RunningProcessTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static ProcessCommand Shell(string script) => new("sh", ["-c", script]);

    [Fact]
    public async Task A_failing_tool_is_one_line_naming_the_command_and_quoting_its_stderr_tail()
    {
        var error = await Assert.ThrowsAsync<ProcessFailedException>(() =>
            ProcessRunner.RunAsync(Shell("echo progress; echo 'first problem' >&2; echo 'tool: the real reason' >&2; exit 3"), Ct));
        Assert.Equal(3, error.ExitCode);
        Assert.DoesNotContain('\n', error.Message);
        Assert.StartsWith("'sh -c \"echo progress;", error.Message, StringComparison.Ordinal);
        Assert.Contains("exited with 3: first problem | tool: the real reason", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_successful_run_returns_both_streams_and_unchecked_failures_their_exit_code()
    {
        var result = await ProcessRunner.RunAsync(Shell("echo out; printf 'no newline' >&2"), Ct);
        Assert.Equal(new ProcessResult(0, "out\n", "no newline\n"), result);
        Assert.Equal(7, (await ProcessRunner.RunAsync(Shell("exit 7"), Ct, check: false)).ExitCode);
    }

    [Fact]
    public async Task A_program_that_is_not_installed_says_where_it_comes_from()
    {
        var error = await Assert.ThrowsAsync<ProcessFailedException>(() =>
            ProcessRunner.RunAsync(new ProcessCommand("streamclone-no-such-tool", []) { InstallHint = "apt-get install nothing" }, Ct));
        Assert.Null(error.ExitCode);
        Assert.StartsWith("cannot run 'streamclone-no-such-tool' (apt-get install nothing): ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_line_is_awaited_whether_it_came_before_or_after_the_wait_began()
    {
        var lines = new List<string>();
        await using var child = RunningProcess.Start(new ProcessCommand("cat", []) { KeepStdinOpen = true, StdoutLine = l => { lock (lines) { lines.Add(l); } } });
        await child.Stdin.WriteLineAsync("early".AsMemory(), Ct);
        await child.Stdin.FlushAsync(Ct);
        Assert.Equal("early", await child.WaitForLineAsync(OutputStream.Stdout, l => l == "early", Guard, Ct));

        var late = child.WaitForLineAsync(OutputStream.Stdout, l => l.StartsWith("late", StringComparison.Ordinal), Guard, Ct);
        Assert.False(late.IsCompleted);
        await child.Stdin.WriteLineAsync("late line\r".AsMemory(), Ct);
        await child.Stdin.FlushAsync(Ct);
        Assert.Equal("late line", await late);

        child.Stdin.Close();
        Assert.Equal(0, await child.WaitAsync(Guard, Ct));
        lock (lines)
        {
            Assert.Equal(["early", "late line"], lines);
        }
    }

    [Fact]
    public async Task A_process_that_ends_without_the_line_fails_the_wait_with_its_stderr()
    {
        await using var child = RunningProcess.Start(Shell("echo 'giving up' >&2; exit 2") with { Name = "quitter" });
        var error = await Assert.ThrowsAsync<ProcessFailedException>(() => child.WaitForLineAsync(OutputStream.Stdout, _ => true, Guard, Ct));
        Assert.Equal("quitter exited with 2 before printing the line waited for on stdout; stderr: giving up", error.Message);
    }

    [Fact]
    public async Task Kill_ends_the_process_and_what_it_started_with_SIGKILL()
    {
        await using var child = RunningProcess.Start(Shell("sleep 300 & echo $!; wait"));
        var grandchild = int.Parse(await child.WaitForLineAsync(OutputStream.Stdout, _ => true, Guard, Ct), CultureInfo.InvariantCulture);
        child.Kill();
        // The background sleep holds the stdout pipe open: the exit (which waits for the pipes' end, or gives up after
        // 10 s) comes at once only if the sleep died with its parent.
        Assert.Equal(137, await child.Exited.WaitAsync(TimeSpan.FromSeconds(5), Ct));
        Assert.True(child.HasExited);
        Assert.True(!Directory.Exists($"/proc/{grandchild}") || IsZombie(grandchild), $"sleep {grandchild} outlived the kill");
    }

    [Fact]
    public async Task Stop_sends_SIGTERM_first_and_SIGKILL_only_after_the_grace()
    {
        await using (var polite = RunningProcess.Start(Shell("trap 'echo cleaned up; exit 0' TERM; echo ready; while :; do sleep 0.05; done")))
        {
            await polite.WaitForLineAsync(OutputStream.Stdout, l => l == "ready", Guard, Ct);
            Assert.Equal(0, await polite.StopAsync(Guard));
            Assert.Contains("cleaned up", polite.StdoutLines);
        }

        await using var stubborn = RunningProcess.Start(Shell("trap '' TERM; echo ready; while :; do sleep 0.05; done"));
        await stubborn.WaitForLineAsync(OutputStream.Stdout, l => l == "ready", Guard, Ct);
        Assert.Equal(137, await stubborn.StopAsync(TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public async Task A_wait_that_times_out_kills_the_process_and_quotes_its_stderr()
    {
        await using var child = RunningProcess.Start(Shell("echo 'stuck here' >&2; exec sleep 300") with { Name = "sleeper" });
        await child.WaitForLineAsync(OutputStream.Stderr, l => l == "stuck here", Guard, Ct);
        var error = await Assert.ThrowsAsync<TimeoutException>(() => child.WaitAsync(TimeSpan.FromMilliseconds(200), Ct));
        Assert.Equal("sleeper did not exit within 0.2 s; stderr: stuck here", error.Message);
        Assert.Equal(137, await child.Exited.WaitAsync(Guard, Ct));
    }

    [Fact]
    public async Task The_port_file_is_read_once_it_appears_and_a_server_that_dies_first_is_reported()
    {
        using var dir = new TempDir();
        var portFile = dir.File("port");
        await using (var server = RunningProcess.Start(Shell($"echo 4711 > '{portFile}.tmp'; mv '{portFile}.tmp' '{portFile}'; exec sleep 300")))
        {
            Assert.Equal(4711, await PortFile.WaitAsync(portFile, server, Guard, Ct));
        }

        await using var broken = RunningProcess.Start(Shell("echo 'address in use' >&2; exit 1") with { Name = "source" });
        var error = await Assert.ThrowsAsync<ProcessFailedException>(() => PortFile.WaitAsync(dir.File("never"), broken, Guard, Ct));
        Assert.Equal("source exited with 1 before listening: address in use", error.Message);
    }

    [Fact]
    public async Task Kept_lines_are_bounded_and_keep_the_newest()
    {
        var result = RunningProcess.Start(Shell("seq 1 1000") with { KeptLines = 100 });
        await using var _ = result;
        Assert.Equal(0, await result.WaitAsync(Guard, Ct));
        var kept = result.StdoutLines;
        Assert.InRange(kept.Length, 50, 100);
        Assert.Equal("1000", kept[^1]);
        Assert.Equal("1000", result.LastLine);
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
    }
}
