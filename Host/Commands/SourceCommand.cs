using System.CommandLine;

namespace StreamClone.Host.Commands;

internal static class SourceCommand
{
    public static Command Create()
    {
        var command = new Command("source", "TODO");
        command.SetAction(_ => 0);
        return command;
    }
}
