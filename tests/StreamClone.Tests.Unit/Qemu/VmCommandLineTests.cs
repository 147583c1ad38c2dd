using StreamClone.Qemu;

namespace StreamClone.Tests.Unit.Qemu;

public class VmCommandLineTests
{
    private static readonly GuestImage Guest = new("/g", "/g/vmlinuz", "/g/initrd.gz", "/g/data.raw", "6.1.0-56-cloud-amd64");

    [Fact]
    public void The_command_line_names_the_disk_nodes_qmp_socket_and_fill()
    {
        var args = VmLauncher.BuildArguments(new VmOptions { Guest = Guest, Memory = "512M", FillMiB = 200 },
            VmAccel.Tcg, "/tmp/q/qmp.sock", "/tmp/q/disk.raw");

        Assert.Equal("tcg", After(args, "-accel"));
        Assert.Equal("512M", After(args, "-m"));
        Assert.Equal("1", After(args, "-smp"));
        Assert.Contains("sc.fill=200", After(args, "-append"), StringComparison.Ordinal);
        Assert.Contains("console=ttyS0", After(args, "-append"), StringComparison.Ordinal);
        Assert.Equal("unix:/tmp/q/qmp.sock,server=on,wait=off", After(args, "-qmp"));
        Assert.Contains("driver=file,filename=/tmp/q/disk.raw,node-name=file0", args);
        Assert.Contains("driver=raw,file=file0,node-name=disk0", args);
        Assert.Contains("virtio-blk-pci,drive=disk0,id=vd0", args);
        Assert.DoesNotContain("-incoming", args);
    }

    [Fact]
    public void A_restore_target_gets_incoming_defer_and_kvm_when_asked()
    {
        var args = VmLauncher.BuildArguments(new VmOptions { Guest = Guest, IncomingDefer = true, DiskFormat = "qcow2" },
            VmAccel.Kvm, "/q.sock", "/d.qcow2");

        Assert.Equal("defer", After(args, "-incoming"));
        Assert.Equal("kvm", After(args, "-accel"));
        Assert.Contains("driver=qcow2,file=file0,node-name=disk0", args);
    }

    [Fact]
    public void Commas_in_paths_are_doubled_as_QEMU_option_syntax_requires()
    {
        var args = VmLauncher.BuildArguments(new VmOptions { Guest = Guest }, VmAccel.Tcg, "/a,b/q.sock", "/a,b/d.raw");

        Assert.Contains("driver=file,filename=/a,,b/d.raw,node-name=file0", args);
        Assert.Equal("unix:/a,,b/q.sock,server=on,wait=off", After(args, "-qmp"));
    }

    [Fact]
    public void Auto_must_be_resolved_before_building_a_command_line() =>
        Assert.Throws<ArgumentException>(() => VmLauncher.BuildArguments(new VmOptions { Guest = Guest }, VmAccel.Auto, "/q", "/d"));

    private static string After(List<string> args, string flag) => args[args.IndexOf(flag) + 1];
}
