using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Processes;
using StreamClone.Qemu;

namespace StreamClone.TestGuest;


/// <summary>Options of <see cref="GuestBuilder.BuildAsync"/>.</summary>
public sealed record GuestBuildOptions
{
    /// <summary>Output directory; default <see cref="GuestBuilder.DefaultDirectory"/>.</summary>
    public string? OutDir { get; init; }

    /// <summary>Size of the raw ext4 data disk. 64 MiB holds the workload's 64 KiB file with room to spare.</summary>
    public int DiskSizeMiB { get; init; } = 64;

    /// <summary>Install missing Debian packages with apt-get (the launcher runs as root).</summary>
    public bool InstallMissing { get; init; } = true;
}

/// <summary>
/// Builds the test guest from Debian packages: the cloud kernel from /boot, a busybox initramfs whose
/// /init loads virtio-pci/virtio-blk (and their modules.dep dependencies), mounts the data disk at
/// /data and runs the static workload (guest/workload.c), and a raw ext4 data disk. Idempotent: a stamp
/// file (kernel version + hash of the embedded sources + disk size) skips the build when nothing changed.
/// </summary>
public static class GuestBuilder
{
    /// <summary>Opens an already built guest directory (no build), or throws naming what is missing.</summary>
    public static GuestImage Open(string directory)
    {
        var stamp = Path.Combine(directory, StampName);
        if (!File.Exists(stamp))
            throw new FileNotFoundException($"no built guest in '{directory}' (run `streamclone guest build --out {directory}`)", stamp);
        var version = File.ReadAllLines(stamp).FirstOrDefault(l => l.StartsWith("kernel=", StringComparison.Ordinal))?[7..] ?? "";
        return ImageIn(directory, version);
    }

    internal const string StampName = "stamp";
    private const string KernelName = "vmlinuz";
    private const string InitrdName = "initrd.gz";
    private const string DiskName = "data.raw";

    /// <summary>Bump when the build recipe changes in a way the stamp inputs do not show.</summary>
    private const int RecipeVersion = 1;

    /// <summary>Modules /init loads; virtio_pci brings the PCI transport, virtio_blk the disk. ext4 and
    /// crc32c are built into Debian's cloud kernel (modules.builtin) and are skipped when they are.</summary>
    private static readonly string[] RootModules = ["virtio_pci", "virtio_blk", "ext4", "crc32c_generic"];

    /// <summary>Packages named by the brief; qemu-utils brings qemu-img for overlays.</summary>
    private static readonly (string Tool, string Package)[] Tools =
    [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
        ("busybox", "busybox-static"),
        ("cpio", "cpio"),
        ("mkfs.ext4", "e2fsprogs"),
        ("gcc", "gcc"),
        ("gzip", "gzip"),
    ];

    /// <summary>~/.cache/streamclone/guest (honours XDG_CACHE_HOME).</summary>
    public static string DefaultDirectory
    {
        get
        {
            var cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (string.IsNullOrEmpty(cache))
                cache = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(cache, "streamclone", "guest");
        }
    }

    public static async Task<GuestImage> BuildAsync(GuestBuildOptions? options = null, ILogger? logger = null,
        CancellationToken ct = default)
    {
        options ??= new GuestBuildOptions();
        logger ??= NullLogger.Instance;
        var outDir = Path.GetFullPath(options.OutDir ?? DefaultDirectory);
        Directory.CreateDirectory(outDir);

        await EnsurePackagesAsync(options.InstallMissing, logger, ct);
        var (kernelFile, kernelVersion) = FindCloudKernel();

        var workload = ReadResource("workload.c");
        var init = ReadResource("init.sh");
        var stamp = $"kernel={kernelVersion}\nrecipe={RecipeVersion}\ndisk={options.DiskSizeMiB}\n" +
                    $"src={Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(workload + "\0" + init)))}\n";

        // Several test processes may build at once: one builds, the others wait and then see the stamp.
        await using var buildLock = await AcquireLockAsync(Path.Combine(outDir, ".lock"), ct);
        var image = ImageIn(outDir, kernelVersion);
        var stampPath = Path.Combine(outDir, StampName);
        if (File.Exists(stampPath) && await File.ReadAllTextAsync(stampPath, ct) == stamp &&
            File.Exists(image.KernelPath) && File.Exists(image.InitrdPath) && File.Exists(image.DiskPath))
        {
            QemuLog.GuestUpToDate(logger, outDir, kernelVersion);
            return image;
        }

        var modules = ResolveModules(kernelVersion);
        QemuLog.GuestBuilding(logger, outDir, kernelVersion, string.Join(' ', modules.Select(Path.GetFileName)));
        File.Delete(stampPath);
        var staging = Path.Combine(outDir, ".build-" + Environment.ProcessId);
        if (Directory.Exists(staging))
            Directory.Delete(staging, recursive: true);
        try
        {
            var root = Path.Combine(staging, "root");
            Directory.CreateDirectory(Path.Combine(root, "bin"));
            Directory.CreateDirectory(Path.Combine(root, "lib", "modules"));

            var source = Path.Combine(staging, "workload.c");
            await File.WriteAllTextAsync(source, workload, ct);
            await ProcessRunner.RunAsync(new("gcc", ["-static", "-O2", "-Wall", "-o", Path.Combine(root, "workload"), source]), ct);

            File.Copy(ProcessRunner.FindOnPath("busybox") ?? throw new InvalidOperationException("busybox not found on PATH"),
                Path.Combine(root, "bin", "busybox"));
            await File.WriteAllTextAsync(Path.Combine(root, "init"), init, ct);
            if (!OperatingSystem.IsWindows())
                File.SetUnixFileMode(Path.Combine(root, "init"),
                    UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                    UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);

            var order = new StringBuilder();
            foreach (var module in modules)
            {
                var name = await CopyModuleAsync(module, Path.Combine(root, "lib", "modules"), ct);
                order.Append(name).Append('\n');
            }
            await File.WriteAllTextAsync(Path.Combine(root, "modules.order"), order.ToString(), ct);

            // cpio newc with root ownership, gzip: the format the kernel unpacks as initramfs.
            await ProcessRunner.RunAsync(
                new("bash", ["-c", "set -euo pipefail; find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -6 > ../initrd.gz"])
                {
                    WorkingDirectory = root,
                },
                ct);

            File.Copy(kernelFile, Path.Combine(staging, KernelName));

            var disk = Path.Combine(staging, DiskName);
            await using (var fs = new FileStream(disk, FileMode.CreateNew))
                fs.SetLength((long)options.DiskSizeMiB << 20);
            await ProcessRunner.RunAsync(new("mkfs.ext4", ["-F", "-q", "-L", "scdata", disk]), ct);

            foreach (var name in new[] { KernelName, InitrdName, DiskName })
                File.Move(Path.Combine(staging, name), Path.Combine(outDir, name), overwrite: true);
            await File.WriteAllTextAsync(stampPath, stamp, ct);
            return image;
        }
        finally
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    internal static GuestImage ImageIn(string dir, string kernelVersion) =>
        new(dir, Path.Combine(dir, KernelName), Path.Combine(dir, InitrdName), Path.Combine(dir, DiskName), kernelVersion);

    private static async Task EnsurePackagesAsync(bool install, ILogger logger, CancellationToken ct)
    {
        var missing = Tools.Where(t => ProcessRunner.FindOnPath(t.Tool) is null).Select(t => t.Package).ToList();
        if (!Directory.Exists("/boot") || !Directory.EnumerateFiles("/boot", "vmlinuz-*-cloud-amd64").Any())
            missing.Add("linux-image-cloud-amd64");
        if (!File.Exists("/usr/include/stdio.h"))
            missing.Add("libc6-dev");
        if (missing.Count == 0)
            return;
        if (!install)
            throw new InvalidOperationException($"missing packages: {string.Join(' ', missing)} (apt-get install -y them)");

        QemuLog.InstallingPackages(logger, string.Join(' ', missing));
        // Other engineers' builds may hold the dpkg lock: wait for it instead of failing.
        string[] aptArgs = ["-o", "DPkg::Lock::Timeout=600", "install", "-y", .. missing];
        var first = await ProcessRunner.RunAsync(AptGet(aptArgs), ct, check: false);
        if (first.ExitCode != 0)
        {
            await ProcessRunner.RunAsync(AptGet(["-o", "DPkg::Lock::Timeout=600", "update"]), ct);
            await ProcessRunner.RunAsync(AptGet(aptArgs), ct);
        }
    }

    /// <summary>apt-get that never stops to ask.</summary>
    private static ProcessCommand AptGet(string[] arguments) => new("apt-get", arguments)
    {
        Environment = new Dictionary<string, string?> { ["DEBIAN_FRONTEND"] = "noninteractive" },
    };

    /// <summary>Newest /boot/vmlinuz-*-cloud-amd64 that this process can read.</summary>
    private static (string File, string Version) FindCloudKernel()
    {
        var kernels = Directory.EnumerateFiles("/boot", "vmlinuz-*-cloud-amd64")
            .Select(f => (File: f, Version: Path.GetFileName(f)["vmlinuz-".Length..]))
            .Where(k => Directory.Exists(Path.Combine("/lib/modules", k.Version)))
            .OrderByDescending(k => k.Version, Comparer<string>.Create(CompareVersions))
            .ToList();
        if (kernels.Count == 0)
            throw new InvalidOperationException("no Debian cloud kernel with modules: expected /boot/vmlinuz-*-cloud-amd64 and /lib/modules/<version> (apt-get install linux-image-cloud-amd64)");
        var kernel = kernels[0];
        try
        {
            using var probe = File.OpenRead(kernel.File);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new InvalidOperationException($"kernel {kernel.File} is not readable by this user (chmod a+r it or run as root)", e);
        }
        return kernel;
    }

    /// <summary>Numeric-aware comparison of versions like 6.1.0-9 vs 6.1.0-56.</summary>
    private static int CompareVersions(string a, string b)
    {
        var pa = a.Split('.', '-');
        var pb = b.Split('.', '-');
        for (var i = 0; i < Math.Min(pa.Length, pb.Length); i++)
        {
            var c = int.TryParse(pa[i], out var na) && int.TryParse(pb[i], out var nb)
                ? na.CompareTo(nb)
                : string.CompareOrdinal(pa[i], pb[i]);
            if (c != 0)
                return c;
        }
        return pa.Length.CompareTo(pb.Length);
    }

    /// <summary>
    /// The module files to load, dependencies first, from /lib/modules/VER/modules.dep (lines
    /// "path: dep1 dep2 …", where the deps are already the full transitive list in load-reverse order).
    /// Modules listed in modules.builtin are compiled in and skipped.
    /// </summary>
    internal static List<string> ResolveModules(string kernelVersion)
    {
        var dir = Path.Combine("/lib/modules", kernelVersion);
        var deps = new Dictionary<string, string[]>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines(Path.Combine(dir, "modules.dep")))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
                continue;
            deps[line[..colon]] = line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        }
        var builtin = File.ReadLines(Path.Combine(dir, "modules.builtin")).Select(ModuleName).ToHashSet(StringComparer.Ordinal);

        var ordered = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Visit(string path)
        {
            if (!seen.Add(path))
                return;
            foreach (var dep in deps.GetValueOrDefault(path, []))
                Visit(dep);
            ordered.Add(path);
        }
        foreach (var name in RootModules)
        {
            if (builtin.Contains(name))
                continue;
            var path = deps.Keys.FirstOrDefault(k => ModuleName(k) == name)
                ?? throw new InvalidOperationException($"kernel module {name} is neither built into {kernelVersion} nor listed in {dir}/modules.dep");
            Visit(path);
        }
        return ordered.Select(p => Path.Combine(dir, p)).ToList();
    }

    /// <summary>kernel/drivers/block/virtio_blk.ko(.xz|.zst) → virtio_blk (dashes and underscores are the same to modprobe).</summary>
    private static string ModuleName(string path)
    {
        var name = Path.GetFileName(path);
        var ko = name.IndexOf(".ko", StringComparison.Ordinal);
        return (ko >= 0 ? name[..ko] : name).Replace('-', '_');
    }

    /// <summary>Copies a module as a plain .ko (busybox insmod does not decompress); returns its file name.</summary>
    private static async Task<string> CopyModuleAsync(string path, string destDir, CancellationToken ct)
    {
        var name = ModuleName(path) + ".ko";
        var dest = Path.Combine(destDir, name);
        if (path.EndsWith(".ko", StringComparison.Ordinal))
        {
            File.Copy(path, dest);
            return name;
        }
        var tool = path.EndsWith(".xz", StringComparison.Ordinal) ? "xz"
            : path.EndsWith(".zst", StringComparison.Ordinal) ? "zstd"
            : throw new InvalidOperationException($"unknown module compression: {path}");
        await ProcessRunner.RunAsync(new("sh", ["-c", $"{tool} -dc \"$1\" > \"$2\"", "sh", path, dest]), ct);
        return name;
    }

    private static string ReadResource(string name)
    {
        using var stream = typeof(GuestBuilder).Assembly.GetManifestResourceStream("StreamClone.TestGuest.guest." + name)
            ?? throw new InvalidOperationException($"embedded guest source {name} missing from {typeof(GuestBuilder).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static async Task<FileStream> AcquireLockAsync(string path, CancellationToken ct)
    {
        // An exclusive open is the lock; the OS drops it if the holder dies. 10 min covers an apt install.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(10);
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200, ct);
            }
        }
    }
}
