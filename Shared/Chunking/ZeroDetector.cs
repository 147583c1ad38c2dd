namespace StreamClone.Shared.Chunking;

public static class ZeroDetector
{
    /// <summary>True when every byte is zero. Vectorised by the runtime (IndexOfAnyExcept).</summary>
    public static bool IsAllZero(ReadOnlySpan<byte> data) => !data.ContainsAnyExcept((byte)0);
}
