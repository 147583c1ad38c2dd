using System.CommandLine;

namespace StreamClone.Host.Commands;

internal static class InspectCommand
{
    public static Command Create()
    {
        var command = new Command("inspect", "TODO");
        command.SetAction(_ => 0);
        return command;
    }
}
