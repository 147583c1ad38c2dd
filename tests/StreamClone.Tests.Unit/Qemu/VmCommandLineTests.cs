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
    public void The_test_guest_fills_kernel_initrd_and_its_command_line()
    {
        var args = VmLauncher.BuildArguments(new VmOptions { Guest = Guest, FillMiB = 32 }, VmAccel.Tcg, "/q", "/d");

        Assert.Equal("/g/vmlinuz", After(args, "-kernel"));
        Assert.Equal("/g/initrd.gz", After(args, "-initrd"));
        Assert.Equal("console=ttyS0 quiet panic=-1 sc.fill=32", After(args, "-append"));
    }

    [Fact]
    public void A_machine_without_the_test_guest_boots_the_kernel_it_names_and_has_no_disk_unless_given()
    {
        var options = new VmOptions { KernelPath = "/k/bzImage", IncomingDefer = true };
        var args = VmLauncher.BuildArguments(options, VmAccel.Tcg, "/q", null);

        Assert.Equal("/k/bzImage", After(args, "-kernel"));
        Assert.Equal("console=ttyS0", After(args, "-append"));
        Assert.DoesNotContain("-initrd", args);
        Assert.DoesNotContain("-blockdev", args);
        Assert.DoesNotContain("-device", args);
        Assert.Null(options.DiskTemplate);

        var full = VmLauncher.BuildArguments(options with { InitrdPath = "/k/initrd", KernelArguments = "console=ttyS0 root=/dev/vda" },
            VmAccel.Tcg, "/q", "/k/disk.qcow2");
        Assert.Equal("/k/initrd", After(full, "-initrd"));
        Assert.Equal("console=ttyS0 root=/dev/vda", After(full, "-append"));
        Assert.Contains("driver=file,filename=/k/disk.qcow2,node-name=file0", full);
    }

    [Fact]
    public void A_machine_with_no_kernel_has_no_direct_boot_options_and_waits_for_no_guest_line()
    {
        var options = new VmOptions { DiskTemplatePath = "/img/vm.raw" };
        var args = VmLauncher.BuildArguments(options, VmAccel.Tcg, "/q", "/d");

        Assert.DoesNotContain("-kernel", args);
        Assert.DoesNotContain("-initrd", args);
        Assert.DoesNotContain("-append", args);
        Assert.Contains("virtio-blk-pci,drive=disk0,id=vd0", args);
        Assert.Equal("/img/vm.raw", options.DiskTemplate);
        // Only the test guest prints the init line the launcher waits for.
        Assert.False(options.WaitsForBoot);
        Assert.True(new VmOptions { Guest = Guest }.WaitsForBoot);
        Assert.False(new VmOptions { Guest = Guest, IncomingDefer = true }.WaitsForBoot);
    }

    [Fact]
    public void Auto_must_be_resolved_before_building_a_command_line() =>
        Assert.Throws<ArgumentException>(() => VmLauncher.BuildArguments(new VmOptions { Guest = Guest }, VmAccel.Auto, "/q", "/d"));

    private static string After(List<string> args, string flag) => args[args.IndexOf(flag) + 1];
}
