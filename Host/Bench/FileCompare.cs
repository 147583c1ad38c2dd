namespace StreamClone.Host.Bench;

internal static class FileCompare
{
    /// <summary>Byte-for-byte equality in 1 MiB blocks (vectorised SequenceEqual), never holding a whole image.</summary>
    public static async Task<bool> AreIdenticalAsync(string a, string b, CancellationToken ct = default)
    {
        await using var fa = new FileStream(a, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        await using var fb = new FileStream(b, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        if (fa.Length != fb.Length)
        {
            return false;
        }
        var ba = new byte[1 << 20];
        var bb = new byte[1 << 20];
        while (true)
        {
            var ra = await fa.ReadAtLeastAsync(ba, ba.Length, throwOnEndOfStream: false, ct);
            var rb = await fb.ReadAtLeastAsync(bb, bb.Length, throwOnEndOfStream: false, ct);
            if (ra != rb || !ba.AsSpan(0, ra).SequenceEqual(bb.AsSpan(0, rb)))
            {
                return false;
            }
            if (ra == 0)
            {
                return true;
            }
        }
    }
}
