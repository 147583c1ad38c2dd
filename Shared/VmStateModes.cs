namespace StreamClone.Shared;

/// <summary>
/// Modes of everything we create that holds VM state (RAM copies, store objects and journals, scratch
/// images, clone overlays) or says where it is: a snapshot is a VM's memory, keys and customer data,
/// so only the owner may read it, and without search permission nobody else can reach the files at all.
/// </summary>
public static class VmStateModes
{
    public const UnixFileMode File = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    public const UnixFileMode Directory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
}
