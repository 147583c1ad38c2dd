using System.CommandLine;
using StreamClone.Shared;

namespace StreamClone.Host.Commands;

/// <summary>
/// A command-line snapshot id, checked by the one id rule (<see cref="WireLimits.SnapshotIdRule"/>) while
/// parsing: a bad id is a usage error, not a source whose every sink refuses the offer or a restore
/// that looks for a directory outside the store.
/// </summary>
internal static class SnapshotIdOption
{
    public static Option<string?> Create(string name, string description)
    {
        var option = new Option<string?>(name) { Description = $"{description} Ids are {WireLimits.SnapshotIdRule}." };
        option.Validators.Add(result =>
        {
            var id = result.GetValueOrDefault<string?>();
            if (id is not null && !WireLimits.IsValidSnapshotId(id))
            {
                result.AddError($"{name}: '{id}' is not a snapshot id ({WireLimits.SnapshotIdRule})");
            }
        });
        return option;
    }
}
