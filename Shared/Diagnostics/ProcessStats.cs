namespace StreamClone.Shared.Diagnostics;

public static class ProcessStats
{
    /// <summary>Total time this process's threads were paused by the GC, in ms (a demand-latency suspect).</summary>
    public static double GcPauseMs() => Math.Round(GC.GetTotalPauseDuration().TotalMilliseconds, 1);

    /// <summary>Blocking full collections so far.</summary>
    public static int Gen2Collections() => GC.CollectionCount(2);

    /// <summary>Peak resident set size in MiB (VmHWM from /proc/self/status); 0 where unavailable.</summary>
    public static double PeakRssMiB()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    var kb = long.Parse(line.AsSpan(6).Trim().ToString().Split(' ')[0]);
                    return Math.Round(kb / 1024.0, 1);
                }
            }
        }
        catch (IOException)
        {
        }
        return 0;
    }
}
