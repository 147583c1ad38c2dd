namespace StreamClone.Qemu.Migration;

/// <summary>
/// The QEMU migration stream is malformed, uses a feature this reader does not support, or ended early.
/// <see cref="Offset"/> is the absolute byte offset in the stream where the problem was found.
/// </summary>
public sealed class QemuStreamException : Exception
{
    public QemuStreamException(long offset, string message)
        : base(message) => Offset = offset;

    public QemuStreamException()
    {
    }

    public QemuStreamException(string message) : base(message)
    {
    }

    public QemuStreamException(string message, Exception innerException) : base(message, innerException)
    {
    }

    /// <summary>Byte offset in the stream (counted from the first byte of the file header); -1 when unknown.</summary>
    public long Offset { get; } = -1;
}
