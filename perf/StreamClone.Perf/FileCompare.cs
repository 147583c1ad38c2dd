namespace StreamClone.Perf;

public static class FileCompare
{
    /// <summary>Byte-for-byte equality, streamed in 1 MiB blocks (vectorised compare; sizes first).</summary>
    public static async Task<bool> SameContentAsync(string a, string b, CancellationToken ct)
    {
        const int Block = 1 << 20;
        await using var left = new FileStream(a, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous | FileOptions.SequentialScan);
        await using var right = new FileStream(b, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous | FileOptions.SequentialScan);
        if (left.Length != right.Length)
        {
            return false;
        }
        var x = new byte[Block];
        var y = new byte[Block];
        while (true)
        {
            var readY = right.ReadAtLeastAsync(y, Block, throwOnEndOfStream: false, ct);
            var nx = await left.ReadAtLeastAsync(x, Block, throwOnEndOfStream: false, ct);
            var ny = await readY;
            if (nx != ny || !x.AsSpan(0, nx).SequenceEqual(y.AsSpan(0, ny)))
            {
                return false;
            }
            if (nx == 0)
            {
                return true;
            }
        }
    }
}
