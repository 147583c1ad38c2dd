namespace StreamClone.Qemu;

/// <summary>
/// The files a machine boots from with a direct kernel boot: the project's test guest is one such
/// image (tests/StreamClone.TestGuest builds it), any kernel + initramfs + disk is another.
/// </summary>
/// <param name="Directory">Directory holding the files below.</param>
/// <param name="KernelPath">Kernel (bzImage) for <c>-kernel</c>.</param>
/// <param name="InitrdPath">Initramfs for <c>-initrd</c>.</param>
/// <param name="DiskPath">Pristine data disk; VMs run on copies of it.</param>
/// <param name="KernelVersion">uname -r of the kernel, when known.</param>
public sealed record GuestImage(string Directory, string KernelPath, string InitrdPath, string DiskPath, string KernelVersion);
