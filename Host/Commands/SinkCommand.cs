using System.CommandLine;

namespace StreamClone.Host.Commands;

internal static class SinkCommand
{
    public static Command Create()
    {
        var command = new Command("sink", "TODO");
        command.SetAction(_ => 0);
        return command;
    }
}
