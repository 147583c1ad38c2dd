namespace StreamClone.Source.Live;

/// <summary>
/// A live snapshot failed after it started: the migration stream was cut short or corrupt, the VM died,
/// QEMU ended the migration with an error, or the work directory could not hold the RAM pages. Readers
/// of the snapshot fail with it and it is never offered as complete. An <see cref="IOException"/>, so the
/// CLI ends with one clear line instead of a stack trace.
/// </summary>
public sealed class LiveSnapshotException : IOException
{
    public LiveSnapshotException()
    {
    }

    public LiveSnapshotException(string message) : base(message)
    {
    }

    public LiveSnapshotException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
