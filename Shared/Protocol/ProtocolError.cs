namespace StreamClone.Shared.Protocol;

/// <summary>Why a peer was cut off; sent in an Error frame and recorded as the close reason.</summary>
public enum ProtocolError
{
    None = 0,
    BadMagic = 1,
    UnsupportedVersion = 2,
    FrameTooLarge = 3,
    ChecksumMismatch = 4,
    OutOfSequence = 5,
    MalformedHeader = 6,
    UnexpectedFrame = 7,
    HashMismatch = 8,
    BadChunkPlacement = 9,
    DecompressionFailed = 10,
    UnknownSession = 11,
    StoreFailure = 12,
    IncompleteSnapshot = 13,
    RootHashMismatch = 14,
    PeerError = 15,
    /// <summary>A well-formed offer this node will not take (its size exceeds the node's limit or free disk space).</summary>
    OfferRefused = 16,
    /// <summary>The source already runs its maximum number of sessions (SourceOptions.MaxSessions); try later or via a relay.</summary>
    TooManySessions = 17,
    /// <summary>The peer went past a per-session limit: an inventory larger than the offer, or not sent in time.</summary>
    LimitExceeded = 18,
}

/// <summary>A peer broke the protocol; the connection is dropped, nothing it sent after the last verified chunk is kept.</summary>
public sealed class ProtocolViolationException : Exception
{
    public ProtocolViolationException(ProtocolError code, string message)
        : base($"{code}: {message}") => Code = code;

    public ProtocolViolationException(ProtocolError code, string message, Exception inner)
        : base($"{code}: {message}", inner) => Code = code;

    public ProtocolViolationException()
    {
    }

    public ProtocolViolationException(string message) : base(message)
    {
    }

    public ProtocolViolationException(string message, Exception innerException) : base(message, innerException)
    {
    }

    public ProtocolError Code { get; }
}
