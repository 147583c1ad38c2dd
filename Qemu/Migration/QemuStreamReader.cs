using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace StreamClone.Qemu.Migration;

/// <summary>
/// Limits of <see cref="QemuStreamReader"/>; each says why its number. The buffered device region (FULL sections +
/// EOF + vmdesc, [V] 76 KiB on a q35 test machine) has no option: it travels in the device-state object, so the
/// reader caps it at what that object still holds (<c>DeviceStateObject.MaxDeviceRegionBytes</c>), no more, no less.
/// </summary>
public sealed class QemuStreamReaderOptions
{
    /// <summary>
    /// Demand the vmdesc JSON after EOF. QEMU 7.2 sends it unless the machine sets suppress-vmdesc (only
    /// pc-i440fx-2.0..2.2 and xenfv) or it is in postcopy, never the case for a background snapshot. Since the
    /// device region has no lengths, the vmdesc is the only way to tell "complete" from "cut short" there.
    /// </summary>
    public bool RequireVmDescription { get; init; } = true;

    /// <summary>
    /// Demand that every page of every block was sent at least once (PAGE or ZERO) before the device state. True of
    /// every complete precopy stream: the first pass sends all pages (ram.c ram_list_init_bitmaps starts all-ones),
    /// and a background snapshot sends each exactly once (note §8.1). It catches a stream whose pages went elsewhere
    /// (multifd sends pages on separate channels that this reader never sees; 7.2 leaves no mark of it in the main
    /// stream). Turn off only for streams that omit pages on purpose, such as <c>QemuStreamWriter</c>'s output.
    /// </summary>
    public bool RequireEveryPage { get; init; } = true;

    /// <summary>
    /// Cap on the MEM_SIZE total (sum of all blocks' used_length), checked before sizing the page bitmap from it
    /// (1 bit per 4 KiB page: 32 MiB at the 1 TiB default).
    /// </summary>
    public long MaxRamBytes { get; init; } = 1L << 40;
}

/// <summary>Counters of one <see cref="QemuStreamReader"/> run.</summary>
public sealed class QemuStreamStatistics
{
    public long BytesRead { get; internal set; }
    public long PageRecords { get; internal set; }
    public long FilledRecords { get; internal set; }
    /// <summary>Records that named their block (CONTINUE clear).</summary>
    public long NamedRecords { get; internal set; }
    /// <summary>Page/zero records whose (block, offset) is not the page right after the previous record's.</summary>
    public long OutOfOrderRecords { get; internal set; }
    /// <summary>ram START/PART/END chunks.</summary>
    public long RamChunks { get; internal set; }
    /// <summary>Pages whose bytes straddled two pipe segments and were copied into the reader's straddle buffer.</summary>
    public long StraddledPages { get; internal set; }
    public long DeviceRegionBytes { get; internal set; }
    /// <summary>PAGE/ZERO records for a page that was already sent (never in a background snapshot; later one wins).</summary>
    public long DuplicateRecords { get; internal set; }
}

/// <summary>
/// Parses a QEMU 7.2 migration stream (as written by <c>migrate</c> with <c>background-snapshot</c>) while it
/// arrives on a <see cref="PipeReader"/>, and hands RAM pages and the device state to an
/// <see cref="IMigrationStreamSink"/>. Nothing is spooled to disk; only the device region (tens of KiB) is buffered.
/// </summary>
/// <remarks>
/// Two levels, as everywhere in StreamClone: each <c>Try…</c> step parses one unit (file header, configuration,
/// section header, RAM record, footer) and returns false, consuming nothing, while the unit is incomplete; inside a
/// unit, malformed values throw <see cref="QemuStreamException"/> with the offset, what was expected and the bad
/// value. If the transport ends in the middle of a unit the reader throws "stream cut short at offset N while
/// reading …". The files: this one holds the read loop and state; <c>.Sections.cs</c> the file header,
/// configuration, section headers/footers, commands and the device region; <c>.Ram.cs</c> the "ram" records.
/// Layout facts: shared/notes/qemu-migration-stream.md (§ numbers below), checked against QEMU 7.2
/// migration/savevm.c, ram.c, qemu-file.c.
/// </remarks>
public sealed partial class QemuStreamReader
{
    private enum State
    {
        FileHeader,
        Configuration,
        Section,
        RamRecords,
        Footer,
        DeviceRegion,
        Done,
    }

    private enum EventKind
    {
        None,
        Blocks,
        Page,
        Filled,
    }

    /// <summary>What one parsed unit produced for the sink; Page slices the current pipe buffer.</summary>
    private struct StepEvent
    {
        public EventKind Kind;
        public int Block;
        public long Offset;
        public byte Fill;
        public ReadOnlySequence<byte> Page;
    }

    private readonly PipeReader _input;
    private readonly IMigrationStreamSink _sink;
    private readonly QemuStreamReaderOptions _options;

    /// <summary>Absolute stream offset of the first byte of the current pipe buffer's unparsed part.</summary>
    private long _position;

    private State _state = State.FileHeader;

    /// <summary>Names the unit a "not yet" step was waiting for, for the cut-short message.</summary>
    private string _pending = "the file header";

    public QemuStreamReader(PipeReader input, IMigrationStreamSink sink, QemuStreamReaderOptions? options = null)
    {
        _input = input;
        _sink = sink;
        _options = options ?? new QemuStreamReaderOptions();
    }

    public QemuStreamStatistics Statistics { get; } = new();

    /// <summary>
    /// Reads the whole stream, calling the sink as units complete, until the transport ends (the PipeReader
    /// completes). Completes after <see cref="IMigrationStreamSink.OnDeviceStateAsync"/> returned. Does not complete
    /// the PipeReader: its owner does.
    /// </summary>
    public async Task ReadToEndAsync(CancellationToken ct = default)
    {
        while (true)
        {
            var result = await _input.ReadAsync(ct);
            var buffer = result.Buffer;
            long unparsed;
            try
            {
                while (_state != State.DeviceRegion)
                {
                    var before = buffer.Length;
                    if (!TryStep(ref buffer, out var ev))
                    {
                        break;
                    }

                    var start = _position;
                    _position += before - buffer.Length;
                    if (ev.Kind != EventKind.None)
                    {
                        await DeliverAsync(ev, start, ct);
                    }
                }

                if (_state == State.DeviceRegion && !buffer.IsEmpty)
                {
                    AppendDeviceRegion(buffer);
                    _position += buffer.Length;
                    buffer = buffer.Slice(buffer.End);
                }
            }
            finally
            {
                // Everything parsed is consumed; the rest is "examined" so ReadAsync waits for more bytes.
                unparsed = buffer.Length;
                _input.AdvanceTo(buffer.Start, buffer.End);
            }

            Statistics.BytesRead = _position;
            if (result.IsCanceled)
            {
                throw new OperationCanceledException("The QEMU stream read was canceled.", ct);
            }

            if (result.IsCompleted)
            {
                if (_state != State.DeviceRegion)
                {
                    ThrowCutShort(_position + unparsed, _pending, _position);
                }

                var blob = FinishDeviceRegion();
                if (_options.RequireEveryPage)
                {
                    CheckEveryPageSeen();
                }

                _state = State.Done;
                await _sink.OnDeviceStateAsync(blob, ct);
                return;
            }
        }
    }

    /// <summary>Parses one unit; false (nothing consumed) when it is not complete yet.</summary>
    private bool TryStep(ref ReadOnlySequence<byte> buffer, out StepEvent ev)
    {
        ev = default;
        switch (_state)
        {
            case State.RamRecords:
                _pending = "a ram record";
                return TryReadRamRecord(ref buffer, ref ev);
            case State.Footer:
                _pending = "a section footer";
                return TryReadFooter(ref buffer);
            case State.Section:
                _pending = "a section header";
                return TryReadSectionHeader(ref buffer, ref ev);
            case State.FileHeader:
                _pending = "the file header";
                return TryReadFileHeader(ref buffer);
            case State.Configuration:
                _pending = "the configuration section";
                return TryReadConfiguration(ref buffer);
            default:
                return false;
        }
    }

    private ValueTask DeliverAsync(in StepEvent ev, long unitOffset, CancellationToken ct)
    {
        switch (ev.Kind)
        {
            case EventKind.Page:
                ReadOnlyMemory<byte> page;
                if (ev.Page.IsSingleSegment)
                {
                    page = ev.Page.First;
                }
                else
                {
                    // The one copy on the hot path: a page split between two pipe segments.
                    ev.Page.CopyTo(_straddle);
                    page = _straddle;
                    Statistics.StraddledPages++;
                }

                return _sink.OnPageAsync(ev.Block, ev.Offset, page, ct);
            case EventKind.Filled:
                return _sink.OnFilledPageAsync(ev.Block, ev.Offset, ev.Fill, ct);
            case EventKind.Blocks:
                return _sink.OnRamBlocksAsync(_blocks, ct);
            default:
                ThrowMalformed(unitOffset, "a known event", ev.Kind.ToString());
                return default;
        }
    }

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowMalformed(long offset, string expected, string actual) =>
        throw new QemuStreamException(offset, $"Malformed QEMU migration stream at offset {offset}: expected {expected}, got {actual}.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowUnsupported(long offset, string what) =>
        throw new QemuStreamException(offset, $"Unsupported QEMU migration stream at offset {offset}: {what}.");

    [DoesNotReturn, MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowCutShort(long endOffset, string what, long unitOffset) =>
        throw new QemuStreamException(endOffset,
            $"QEMU migration stream cut short at offset {endOffset} while reading {what} (started at offset {unitOffset}).");

    private static string Hex(ulong value) => $"0x{value:X}";
}
