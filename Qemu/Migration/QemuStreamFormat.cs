namespace StreamClone.Qemu.Migration;

/// <summary>
/// Constants of QEMU 7.2's migration stream (see shared/notes/qemu-migration-stream.md; sources named per group).
/// Shared by the Source's reader and the Sink's writer.
/// </summary>
public static class QemuStreamFormat
{
    // migration/savevm.h: QEMU_VM_FILE_MAGIC "QEVM", QEMU_VM_FILE_VERSION; version 2 is the obsolete COMPAT one.
    public const uint FileMagic = 0x5145564D;
    public const uint FileVersion = 3;
    public const uint FileVersionCompat = 2;

    // migration/savevm.h section / marker type bytes.
    public const byte Eof = 0x00;
    public const byte SectionStart = 0x01;
    public const byte SectionPart = 0x02;
    public const byte SectionEnd = 0x03;
    public const byte SectionFull = 0x04;
    public const byte Subsection = 0x05;
    public const byte VmDescription = 0x06;
    public const byte Configuration = 0x07;
    public const byte Command = 0x08;
    public const byte SectionFooter = 0x7E;

    // savevm.c enum qemu_vm_cmd. 1 and 2 only concern the return path; 3.. are postcopy/COLO and change how what
    // follows must be parsed (ADVISE: per-block page sizes in the ram START; PACKAGED: a nested stream).
    public const ushort CommandOpenReturnPath = 1;
    public const ushort CommandPing = 2;
    public const ushort CommandPostcopyAdvise = 3;
    public const ushort CommandPackaged = 7;

    // migration/ram.c ram_mig_init: idstr "ram", instance 0, version 4 (ram_load rejects others).
    public const string RamIdStr = "ram";
    public const uint RamSectionVersion = 4;

    // migration/ram.c RAM_SAVE_FLAG_*: low bits of each record's be64 word.
    public const int RamFlagFull = 0x01;
    public const int RamFlagZero = 0x02;
    public const int RamFlagMemSize = 0x04;
    public const int RamFlagPage = 0x08;
    public const int RamFlagEos = 0x10;
    public const int RamFlagContinue = 0x20;
    public const int RamFlagXbzrle = 0x40;
    public const int RamFlagHook = 0x80;
    public const int RamFlagCompressPage = 0x100;

    /// <summary>TARGET_PAGE_SIZE on x86; the only target page size this implementation accepts.</summary>
    public const int TargetPageSize = 4096;
    public const int TargetPageBits = 12;
}
