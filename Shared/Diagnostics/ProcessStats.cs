namespace StreamClone.Shared.Diagnostics;

public static class ProcessStats
{
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
