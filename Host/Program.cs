using System.CommandLine;
using StreamClone.Host.Commands;

// The host only parses, wires logging and calls into the libraries. Each command lives in its own
// file under Commands/ and is listed here once.
var root = new RootCommand("StreamClone: clone a running VM's snapshot onto many hosts at once.");
root.Subcommands.Add(SourceCommand.Create());
root.Subcommands.Add(SinkCommand.Create());
root.Subcommands.Add(InspectCommand.Create());
root.Subcommands.Add(DemoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(GuestCommand.Create());
root.Subcommands.Add(VmCommand.Create());
return await root.Parse(args).InvokeAsync();
