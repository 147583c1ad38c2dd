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
root.Subcommands.Add(SourceCommand.Create());
root.Subcommands.Add(SinkCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(ImageCommand.Create());
root.Subcommands.Add(GuestCommand.Create());
root.Subcommands.Add(VmCommand.Create());
root.Subcommands.Add(RestoreCommand.Create());

// Expected failures (a bad peer, a full disk, a missing file) end the command with one clear line
// and exit code 1; the details are already in the log. Anything else keeps its stack trace.
try
{
    // Ctrl+C cancels the command's token and waits for it to finish: `bench chaos` then kills its
    // children and unmounts its tmpfs. The 2 s default would exit mid-cleanup and leave mounts behind.
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = TimeSpan.FromSeconds(30) });
}
catch (Exception ex) when (ex is StreamClone.Shared.Protocol.ProtocolViolationException or IOException or UnauthorizedAccessException
    or System.Net.Sockets.SocketException or InvalidDataException or TimeoutException or OperationCanceledException or FormatException
    or StreamClone.Shared.Qemu.QmpException or StreamClone.Shared.Qemu.QmpProtocolException or StreamClone.Shared.Qemu.VmStartException)
{
    Console.Error.WriteLine($"streamclone: {ex.Message}");
    return 1;
}
