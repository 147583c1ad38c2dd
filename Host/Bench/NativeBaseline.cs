namespace StreamClone.Host.Bench;

// TEMPORARY adapter until perf's NativeZstdBaseline lands (branch `perf`).
internal static class NativeBaseline
{
    public static Task<(double Seconds, double Mbps, long WireBytes, bool Identical)> RunAsync(string input, int level, CancellationToken ct) =>
        throw new NotSupportedException($"native baseline not merged yet ({input}, {level}, {ct.IsCancellationRequested})");
}
