namespace StreamClone.Processes;

/// <summary>A program could not be started, or ended with a non-zero exit code: the message is one line naming the
/// command and quoting the tail of what it wrote to stderr (stdout when stderr was empty).</summary>
public sealed class ProcessFailedException : Exception
{
    public ProcessFailedException()
    {
    }

    public ProcessFailedException(string message)
        : base(message)
    {
    }

    public ProcessFailedException(string message, Exception inner)
        : base(message, inner)
    {
    }

    /// <summary>The exit code, or null when the program did not start.</summary>
    public int? ExitCode { get; init; }
}
