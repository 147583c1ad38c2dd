using System.CommandLine;
using StreamClone.Host.Commands;

// The host only parses, wires logging and calls into the libraries. Each command lives in its own
// file under Commands/ and is listed here once.
// Demand work (socket loops' continuations, file reads, verification) runs on the thread pool at
// normal priority while bulk stages run on their own low-priority threads. With the pool's minimum
// at the core count, two pool threads busy with bulk I/O (the reader, the frame sender) leave a demand
// continuation queued until the pool injects a thread (up to ~500 ms); 16 lets it start at once.
ThreadPool.GetMinThreads(out var workers, out var completions);
ThreadPool.SetMinThreads(Math.Max(workers, 16), Math.Max(completions, 16));

var root = new RootCommand("StreamClone: clone a running VM's snapshot onto many hosts at once.");
root.Options.Add(MetricsOption.FinalFile);
root.Subcommands.Add(SourceCommand.Create());
root.Subcommands.Add(SinkCommand.Create());
root.Subcommands.Add(RelayCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(ImageCommand.Create());
root.Subcommands.Add(GuestCommand.Create());
root.Subcommands.Add(VmCommand.Create());
root.Subcommands.Add(RestoreCommand.Create());
root.Subcommands.Add(PkiCommand.Create());
root.Subcommands.Add(StatusCommand.Create());

// Every failure ends the command with one line on stderr and a non-zero exit: the log's line when a
// session already logged its close reason (FailureReport), else this one. Expected ones (a bad peer, a full disk,
// a missing file) exit 1; anything else exits 2 and names its type, and STREAMCLONE_STACKTRACE=1 prints the whole exception for a bug report.
// Parallel stages that fail together surface as (nested) AggregateExceptions: the first cause is the reason.
try
{
    // Ctrl+C / SIGTERM cancel the command and wait this long for it to clean up before the process is ended: a live
    // source must remove its disk views from the VM (QMP round trips, a few ms each, but QEMU may be slow under load)
    // and `bench chaos` kills its children and unmounts its tmpfs; the default 2 s ended the process before that ran.
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = TimeSpan.FromSeconds(30) });
}
catch (Exception caught)
{
    var ex = StreamClone.Shared.FailureReport.FirstCause(caught);
    var expected = ex is StreamClone.Shared.Protocol.ProtocolViolationException or IOException or UnauthorizedAccessException
        or System.Net.Sockets.SocketException or System.Security.Authentication.AuthenticationException or InvalidDataException or TimeoutException or OperationCanceledException or FormatException
        or StreamClone.Qemu.QmpException or StreamClone.Qemu.QmpProtocolException or StreamClone.Qemu.VmStartException
        or StreamClone.Processes.ProcessFailedException;
    if (!(expected && StreamClone.Shared.FailureReport.WasLogged(ex)))
    {
        Console.Error.WriteLine(expected ? $"streamclone: {ex.Message}" : $"streamclone: unexpected {ex.GetType().Name}: {ex.Message}");
    }
    if (Environment.GetEnvironmentVariable("STREAMCLONE_STACKTRACE") == "1")
    {
        Console.Error.WriteLine(caught);
    }
    return expected ? 1 : 2;
}
