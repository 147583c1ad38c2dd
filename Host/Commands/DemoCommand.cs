using System.CommandLine;

namespace StreamClone.Host.Commands;

internal static class DemoCommand
{
    public static Command Create()
    {
        var command = new Command("demo", "TODO");
        command.SetAction(_ => 0);
        return command;
    }
}
