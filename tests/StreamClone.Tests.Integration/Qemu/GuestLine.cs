using System.Globalization;
using System.Text.RegularExpressions;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>A parsed workload line: SC tick=N mem=HEX disk=HEX chk=ok|BAD sweep=K t=MS (guest/workload.c).</summary>
internal sealed partial record GuestLine(long Tick, string Mem, string Disk, bool Ok, long Sweep)
{
    [GeneratedRegex(@"^SC tick=(\d+) mem=([0-9a-f]{8}) disk=([0-9a-f]{8}) chk=(ok|BAD) sweep=(\d+) t=\d+$")]
    private static partial Regex Pattern();

    public static bool IsTick(string line) => Pattern().IsMatch(line);

    public static GuestLine Parse(string line)
    {
        var m = Pattern().Match(line);
        Assert.True(m.Success, $"not a workload tick line: '{line}'");
        return new GuestLine(long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m.Groups[2].Value,
            m.Groups[3].Value, m.Groups[4].Value == "ok", long.Parse(m.Groups[5].Value, CultureInfo.InvariantCulture));
    }
}

/// <summary>A full pass the guest ran on request: SC full tick=N mem=HEX pages=P ms=D (guest/workload.c).</summary>
internal sealed partial record GuestFullPass(long Tick, string Mem, long Pages)
{
    /// <summary>What the test types on the guest's console to ask for one.</summary>
    public const string Request = "full";

    [GeneratedRegex(@"^SC full tick=(\d+) mem=([0-9a-f]{8}) pages=(\d+) ms=\d+$")]
    private static partial Regex Pattern();

    public static bool Is(string line) => Pattern().IsMatch(line);

    public static GuestFullPass Parse(string line)
    {
        var m = Pattern().Match(line);
        Assert.True(m.Success, $"not a workload full-pass line: '{line}'");
        return new GuestFullPass(long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m.Groups[2].Value,
            long.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
    }
}
