namespace StreamClone.Qemu;

/// <summary>
/// QEMU answered a command with <c>{"error": {"class", "desc"}}</c>. <see cref="Class"/> is stable
/// (GenericError, CommandNotFound, DeviceNotActive, DeviceNotFound, KVMMissingCap); <see cref="Desc"/>
/// is for humans only (qmp-spec.txt "error response").
/// </summary>
public class QmpException : Exception
{
    public QmpException(string command, string errorClass, string desc)
        : base($"QMP {command} failed: {errorClass}: {desc}")
    {
        Command = command;
        Class = errorClass;
        Desc = desc;
    }

    public QmpException()
    {
        Command = Class = Desc = "";
    }

    public QmpException(string message)
        : base(message)
    {
        Command = Class = Desc = "";
    }

    public QmpException(string message, Exception innerException)
        : base(message, innerException)
    {
        Command = Class = Desc = "";
    }

    /// <summary>The command that failed.</summary>
    public string Command { get; }

    /// <summary>QMP error class, e.g. GenericError.</summary>
    public string Class { get; }

    /// <summary>QEMU's human-readable description.</summary>
    public string Desc { get; }
}

/// <summary>
/// The peer is not (or no longer) speaking QMP: no greeting in time, a line that is not a JSON
/// object, an oversized line, or the connection closed. The message names the socket path.
/// </summary>
public class QmpProtocolException : IOException
{
    public QmpProtocolException()
    {
    }

    public QmpProtocolException(string message)
        : base(message)
    {
    }

    public QmpProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
