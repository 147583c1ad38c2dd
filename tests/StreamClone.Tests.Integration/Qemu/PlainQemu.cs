using System.Globalization;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>
/// QEMU started the way most people start it: one plain command line with <c>-drive file=…,if=virtio</c>
/// (automatic '#block…' node names), written here and not by VmLauncher. Collects the serial console's lines.
/// </summary>
internal sealed class PlainQemu : IAsyncDisposable
{
    private readonly RunningProcess _process;

    private PlainQemu(RunningProcess process) => _process = process;

    public int ProcessId => _process.Id;

    /// <summary>Starts the test guest (kernel, initramfs) with each drive given as `file=PATH,format=FMT` (if=virtio is
    /// added) and one -qmp monitor per socket (one client each).</summary>
    public static PlainQemu Start(string kernel, string initrd, IEnumerable<string> drives, IEnumerable<string> qmpSockets, int fillMiB = 32)
    {
        List<string> arguments =
        [
            "-machine", "pc", "-accel", "tcg", "-m", "256M", "-smp", "1", "-nodefaults", "-display", "none",
            "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd,
            "-append", string.Create(CultureInfo.InvariantCulture, $"console=ttyS0 quiet panic=-1 sc.fill={fillMiB}"),
        ];
        foreach (var drive in drives)
        {
            arguments.AddRange(["-drive", $"{drive},if=virtio"]);
        }
        foreach (var socket in qmpSockets)
        {
            arguments.AddRange(["-qmp", $"unix:{socket},server=on,wait=off"]);
        }
        // stdin stays open: it is the guest's serial input.
        return new PlainQemu(RunningProcess.Start(new ProcessCommand("qemu-system-x86_64", arguments) { Name = "QEMU", KeepStdinOpen = true }));
    }

    /// <summary>The serial console's lines so far.</summary>
    public List<string> Lines => [.. _process.StdoutLines];

    /// <summary>The guest's tick at least <paramref name="tick"/>.</summary>
    public async Task<GuestLine> TickAtLeastAsync(long tick, CancellationToken ct) =>
        GuestLine.Parse(await _process.WaitForLineAsync(OutputStream.Stdout, l => GuestLine.IsTick(l) && GuestLine.Parse(l).Tick >= tick, TimeSpan.FromSeconds(120), ct));

    public IReadOnlyList<GuestLine> Ticks => [.. Lines.Where(GuestLine.IsTick).Select(GuestLine.Parse)];

    /// <summary>Every path QEMU holds open (targets of /proc/PID/fd), with the bound path of each Unix socket it has.</summary>
    public IReadOnlyList<string> OpenFiles()
    {
        var unixPaths = new Dictionary<string, string>();
        foreach (var line in File.ReadLines("/proc/net/unix").Skip(1))
        {
            // Num RefCount Protocol Flags Type St Inode [Path]
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 8)
            {
                unixPaths[fields[6]] = fields[7];
            }
        }
        var open = new List<string>();
        foreach (var fd in Directory.GetFiles($"/proc/{ProcessId}/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (IOException)
            {
                continue;
            }
            if (target is null)
            {
                continue;
            }
            if (target.StartsWith("socket:[", StringComparison.Ordinal) && unixPaths.TryGetValue(target[8..^1], out var path))
            {
                target = $"{target} {path}";
            }
            open.Add(target);
        }
        return open;
    }

    public Task<int> WaitForExitAsync(TimeSpan timeout) => _process.Exited.WaitAsync(timeout);

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
