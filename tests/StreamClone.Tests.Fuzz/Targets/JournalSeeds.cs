namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>What the two journal targets (the journal alone, and a store replaying it) start from.</summary>
internal static class JournalSeeds
{
    /// <summary>The journal header's magic and record size, beside MessagePack's tokens.</summary>
    public static IReadOnlyList<byte[]> Dictionary { get; } = [.. MessagePackTokens.All, "SCJRNL\0\u0001"u8.ToArray(), [48, 0, 0, 0]];

    /// <summary>A real journal, the same with a torn last record, and its header alone.</summary>
    public static IEnumerable<byte[]> From(byte[] journal)
    {
        yield return journal;
        yield return journal[..^5];
        yield return journal[..16];
    }
}
