namespace StreamClone.Perf;

/// <summary>
/// One run of the native pipeline. <see cref="Mbps"/> is the image (uncompressed) rate in
/// megabits per second, as link speeds are quoted; <see cref="WireBytes"/> is what crossed the
/// socket (zstd frames).
/// </summary>
public sealed record NativeBaselineResult(double Seconds, double Mbps, long WireBytes, bool Identical, int Level)
{
    public long InputBytes { get; init; }

    public double MegabytesPerSecond => Mbps / 8;

    public double WireFraction => InputBytes == 0 ? 0 : (double)WireBytes / InputBytes;

    public override string ToString() =>
        $"native zstd -{Level}: {InputBytes} bytes in {Seconds:F2} s = {Mbps:F0} Mbit/s ({MegabytesPerSecond:F0} MB/s); " +
        $"wire {WireBytes} bytes ({WireFraction:P1}); {(Identical ? "output identical" : "OUTPUT DIFFERS")}";
}
