using System.Buffers;
using System.Text;
using System.Text.Json;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Qemu.Migration;

// File header, configuration, section headers and footers, commands, and the opaque device region.
public sealed partial class QemuStreamReader
{
    /// <summary>Machine class names are ~10 bytes (pc-q35-7.2); anything near this is not a name.</summary>
    private const int MaxMachineNameBytes = 1024;

    /// <summary>7.2 validates one capability (x-ignore-shared); all 7.2 capabilities together are ~30.</summary>
    private const int MaxConfigCapabilities = 256;

    /// <summary>Header + configuration, verbatim (§2, §3): the writer replays them byte for byte.</summary>
    private readonly ArrayBufferWriter<byte> _preamble = new(64);

    /// <summary>FULL sections + EOF + vmdesc, verbatim (§7.2 option 1).</summary>
    private readonly ArrayBufferWriter<byte> _deviceRegion = new(128 * 1024);

    /// <summary>Set when the device region starts (see <see cref="DeviceStateObject.MaxDeviceRegionBytes"/>).</summary>
    private long _maxDeviceRegionBytes;

    private bool _ramStarted;
    private uint _ramSectionId;
    private uint _ramInstanceId;
    private uint _ramVersion;

    /// <summary>The section id the footer after the current ram chunk must carry.</summary>
    private uint _chunkSectionId;

    /// <summary>True while in the ram START chunk (the only place MEM_SIZE may appear).</summary>
    private bool _inStartChunk;

    // §2 savevm.c qemu_loadvm_state_header: be32 "QEVM", be32 3.
    private bool TryReadFileHeader(ref ReadOnlySequence<byte> buffer)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryReadBigEndian(out int magic) || !reader.TryReadBigEndian(out int version))
        {
            return false;
        }

        if ((uint)magic != F.FileMagic)
        {
            ThrowMalformed(_position, $"the file magic {Hex(F.FileMagic)} (\"QEVM\")", Hex((uint)magic));
        }

        if ((uint)version == F.FileVersionCompat)
        {
            ThrowUnsupported(_position + 4, "file version 2 (QEMU_VM_FILE_VERSION_COMPAT) is obsolete; only version 3 is read");
        }

        if ((uint)version != F.FileVersion)
        {
            ThrowMalformed(_position + 4, "file version 3", ((uint)version).ToString());
        }

        Consume(ref buffer, ref reader, _preamble);
        _state = State.Configuration;
        return true;
    }

    // §3 savevm.c vmstate_configuration: 0x07, be32 len + machine name, subsections (0x05, counted name,
    // be32 version, body). No section id, no footer. Absent when the source does not send-configuration.
    private bool TryReadConfiguration(ref ReadOnlySequence<byte> buffer)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryPeek(out var type))
        {
            return false;
        }

        if (type != F.Configuration)
        {
            _state = State.Section;
            return true;
        }

        reader.Advance(1);
        if (!reader.TryReadBigEndian(out int nameLength))
        {
            return false;
        }

        if ((uint)nameLength > MaxMachineNameBytes)
        {
            ThrowMalformed(_position + 1, $"a machine name length ≤ {MaxMachineNameBytes}", ((uint)nameLength).ToString());
        }

        if (!TrySkip(ref reader, nameLength))
        {
            return false;
        }

        while (reader.TryPeek(out var next) && next == F.Subsection)
        {
            var subsectionOffset = _position + reader.Consumed;
            if (reader.Consumed > DeviceStateBlob.MaxPreambleBytes - _preamble.WrittenCount)
            {
                // The configuration is kept verbatim in the device-state blob, whose reader caps it; it is also
                // parsed whole from the pipe, so without this an endless run of subsections would grow the buffer.
                ThrowUnsupported(subsectionOffset, $"configuration section longer than {DeviceStateBlob.MaxPreambleBytes - _preamble.WrittenCount} bytes");
            }

            reader.Advance(1);
            if (!TryReadCountedString(ref reader, out var nameSeq) || !reader.TryReadBigEndian(out int _))
            {
                return false;
            }

            var name = Encoding.Latin1.GetString(nameSeq);
            switch (name)
            {
                case "configuration/target-page-bits":
                    if (!reader.TryReadBigEndian(out int bits))
                    {
                        return false;
                    }

                    if (bits != F.TargetPageBits)
                    {
                        ThrowUnsupported(subsectionOffset,
                            $"target page bits {bits} (only {F.TargetPageBits}, i.e. 4 KiB pages as on x86, are supported)");
                    }

                    break;
                case "configuration/capabilities":
                    if (!reader.TryReadBigEndian(out int count))
                    {
                        return false;
                    }

                    if ((uint)count > MaxConfigCapabilities)
                    {
                        ThrowMalformed(subsectionOffset, $"a capability count ≤ {MaxConfigCapabilities}", ((uint)count).ToString());
                    }

                    for (var i = 0; i < count; i++)
                    {
                        if (!TryReadCountedString(ref reader, out var capability))
                        {
                            return false;
                        }

                        if (Encoding.Latin1.GetString(capability) == "x-ignore-shared")
                        {
                            // Ignored (shared) blocks' pages are not in the stream and their START entries carry
                            // an extra be64 GPA: a clone made from this stream would lack that memory.
                            ThrowUnsupported(subsectionOffset, "capability x-ignore-shared (shared RAM is not in the stream)");
                        }
                    }

                    break;
                case "configuration/uuid":
                    if (!TrySkip(ref reader, 16))
                    {
                        return false;
                    }

                    break;
                default:
                    // A subsection body has no length: an unknown one cannot be skipped.
                    ThrowUnsupported(subsectionOffset, $"unknown configuration subsection '{name}'");
                    break;
            }
        }

        if (reader.End)
        {
            // Another subsection may follow: wait for the byte after the last one.
            return false;
        }

        if (reader.Consumed > DeviceStateBlob.MaxPreambleBytes - _preamble.WrittenCount)
        {
            ThrowUnsupported(_position, $"configuration section longer than {DeviceStateBlob.MaxPreambleBytes - _preamble.WrittenCount} bytes");
        }

        Consume(ref buffer, ref reader, _preamble);
        _state = State.Section;
        return true;
    }

    // §4: START/FULL = type, be32 id, counted idstr, be32 instance, be32 version; PART/END = type, be32 id;
    // EOF = type only; COMMAND = type, be16 cmd, be16 len, len bytes.
    private bool TryReadSectionHeader(ref ReadOnlySequence<byte> buffer, ref StepEvent ev)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryRead(out var type))
        {
            return false;
        }

        switch (type)
        {
            case F.SectionStart:
                {
                    if (!reader.TryReadBigEndian(out int id) || !TryReadCountedString(ref reader, out var idStr)
                        || !reader.TryReadBigEndian(out int instance) || !reader.TryReadBigEndian(out int version))
                    {
                        return false;
                    }

                    var name = Encoding.Latin1.GetString(idStr);
                    if (name != F.RamIdStr)
                    {
                        // block / dirty-bitmap migration: their chunks are not self-delimiting for us.
                        ThrowUnsupported(_position, $"iterative section '{name}' (only \"ram\" is; block/dirty-bitmap migration must be off)");
                    }

                    if (_ramStarted)
                    {
                        ThrowMalformed(_position, "one ram START section", "a second one");
                    }

                    if ((uint)version != F.RamSectionVersion)
                    {
                        ThrowUnsupported(_position, $"ram section version {(uint)version} (QEMU 7.2 ram_load reads only version {F.RamSectionVersion})");
                    }

                    _ramStarted = true;
                    _ramSectionId = (uint)id;
                    _ramInstanceId = (uint)instance;
                    _ramVersion = (uint)version;
                    _chunkSectionId = (uint)id;
                    _inStartChunk = true;
                    break;
                }

            case F.SectionPart:
            case F.SectionEnd:
                {
                    if (!reader.TryReadBigEndian(out int id))
                    {
                        return false;
                    }

                    if (!_ramStarted || (uint)id != _ramSectionId)
                    {
                        ThrowMalformed(_position,
                            _ramStarted ? $"a PART/END of the ram section (id {_ramSectionId})" : "the ram START section before any PART/END",
                            $"section type {type} with id {(uint)id}");
                    }

                    _chunkSectionId = (uint)id;
                    _inStartChunk = false;
                    break;
                }

            case F.SectionFull:
            case F.Eof:
                // §7.2 option 1: from here to the end of the transport is the device region, carried opaquely
                // (FULL sections have no length; only the matching QEMU's loader knows where each ends).
                if (!_ramStarted || _blocks.Length == 0)
                {
                    ThrowMalformed(_position, "the ram START section (block list) before the device state", $"section type {type}");
                }

                // Preamble and block list are final now: what the device region may hold is what still fits the
                // device-state object once they are in it, so this reader refuses exactly what Pack would.
                _maxDeviceRegionBytes = DeviceStateObject.MaxDeviceRegionBytes(
                    DeviceStateBlob.HeaderLength(_preamble.WrittenCount, F.RamIdStr, _blocks));
                _state = State.DeviceRegion;
                _pending = "the device region";
                return true;

            case F.Command:
                {
                    if (!reader.TryReadBigEndian(out short cmd) || !reader.TryReadBigEndian(out short len))
                    {
                        return false;
                    }

                    var command = (ushort)cmd;
                    if (command is not (F.CommandOpenReturnPath or F.CommandPing))
                    {
                        // Postcopy (ADVISE changes the ram START layout, PACKAGED nests a stream) or COLO commands.
                        ThrowUnsupported(_position, $"command {command} (postcopy/COLO; a background snapshot never sends it)");
                    }

                    // OPEN_RETURN_PATH and PING concern only the return path: skipped, not replayed.
                    if (!TrySkip(ref reader, (ushort)len))
                    {
                        return false;
                    }

                    Consume(ref buffer, ref reader, null);
                    return true;
                }

            default:
                ThrowMalformed(_position, "a section type (START 1, PART 2, END 3, FULL 4, EOF 0, COMMAND 8)",
                    type is F.Subsection or F.VmDescription or F.Configuration or F.SectionFooter
                        ? $"0x{type:X2}, which is not valid at section level here"
                        : $"unknown section type 0x{type:X2}");
                break;
        }

        Statistics.RamChunks++;
        Consume(ref buffer, ref reader, null);
        _state = State.RamRecords;
        return true;
    }

    // §4 savevm.c check_section_footer: 0x7E, be32 section id equal to the header's.
    private bool TryReadFooter(ref ReadOnlySequence<byte> buffer)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!reader.TryRead(out var marker) || !reader.TryReadBigEndian(out int id))
        {
            return false;
        }

        if (marker != F.SectionFooter)
        {
            ThrowMalformed(_position, $"the section footer marker 0x{F.SectionFooter:X2}", $"0x{marker:X2}");
        }

        if ((uint)id != _chunkSectionId)
        {
            ThrowMalformed(_position + 1, $"footer section id {_chunkSectionId}", ((uint)id).ToString());
        }

        Consume(ref buffer, ref reader, null);
        _state = State.Section;
        return true;
    }

    private void AppendDeviceRegion(ReadOnlySequence<byte> bytes)
    {
        if (bytes.Length > _maxDeviceRegionBytes - _deviceRegion.WrittenCount)
        {
            ThrowUnsupported(_position, $"device region larger than {_maxDeviceRegionBytes} bytes " +
                $"(with the preamble and RAM block list, the most a {DeviceStateObject.Capacity}-byte device-state object holds)");
        }

        foreach (var segment in bytes)
        {
            _deviceRegion.Write(segment.Span);
        }
    }

    /// <summary>The transport ended: check the device region ends like a complete stream and build the blob.</summary>
    private DeviceStateBlob FinishDeviceRegion()
    {
        var region = _deviceRegion.WrittenMemory;
        Statistics.DeviceRegionBytes = region.Length;
        if (DeviceStateBlob.TryLocateVmDescription(region.Span, out var jsonStart))
        {
            if (!IsWellFormedJson(region.Span[jsonStart..]))
            {
                ThrowCutShort(_position, "the vmdesc JSON (it is not well-formed)", _position - region.Length + jsonStart);
            }
        }
        else if (_options.RequireVmDescription || region.Length == 0 || region.Span[^1] != F.Eof)
        {
            ThrowCutShort(_position, _options.RequireVmDescription
                ? "the device region (it does not end with EOF 0x00 + vmdesc 0x06 be32 len JSON)"
                : "the device region (it does not end with EOF 0x00)", _position - region.Length);
        }

        // Copies: the blob outlives this reader and the buffers are reused by nobody else, but ToArray keeps the
        // blob's memory exactly sized.
        return new DeviceStateBlob(_preamble.WrittenMemory.ToArray(), _ramSectionId, F.RamIdStr, _ramInstanceId, _ramVersion,
            F.TargetPageSize, _blocks, region.ToArray());
    }

    private static bool IsWellFormedJson(ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 256 });
            while (reader.Read())
            {
            }

            return reader.BytesConsumed == json.Length;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    // qemu-file.c qemu_get_counted_string: u8 len + len bytes, no NUL.
    private static bool TryReadCountedString(ref SequenceReader<byte> reader, out ReadOnlySequence<byte> value)
    {
        value = default;
        if (!reader.TryRead(out var len))
        {
            return false;
        }

        if (reader.Remaining < len)
        {
            return false;
        }

        value = reader.UnreadSequence.Slice(0, len);
        reader.Advance(len);
        return true;
    }

    private static bool TrySkip(ref SequenceReader<byte> reader, long count)
    {
        if (reader.Remaining < count)
        {
            return false;
        }

        reader.Advance(count);
        return true;
    }

    /// <summary>Moves <paramref name="buffer"/> past what <paramref name="reader"/> read, copying those bytes to <paramref name="copy"/>.</summary>
    private static void Consume(ref ReadOnlySequence<byte> buffer, ref SequenceReader<byte> reader, ArrayBufferWriter<byte>? copy)
    {
        if (copy is not null)
        {
            foreach (var segment in buffer.Slice(0, reader.Consumed))
            {
                copy.Write(segment.Span);
            }
        }

        buffer = buffer.Slice(reader.Position);
    }
}
