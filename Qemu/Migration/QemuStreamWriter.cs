using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using StreamClone.Shared.Chunking;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Qemu.Migration;

/// <summary>Where <see cref="QemuStreamWriter"/> gets guest RAM from (e.g. the Sink's chunk store).</summary>
public interface IRamSource
{
    /// <summary>
    /// Writes the 4096-byte page at byte <paramref name="offset"/> of block <paramref name="blockIndex"/> (index into
    /// <see cref="DeviceStateBlob.Blocks"/>) into <paramref name="destination"/>, or returns false without touching it
    /// when the page is known to be all zero (e.g. its chunk carries the zero mark), so nothing needs to be read.
    /// <paramref name="destination"/> is the writer's output buffer: valid only until the returned task completes.
    /// </summary>
    ValueTask<bool> TryReadPageAsync(int blockIndex, long offset, Memory<byte> destination, CancellationToken ct);
}

/// <summary>Bounds and policies of <see cref="QemuStreamWriter"/>.</summary>
public sealed class QemuStreamWriterOptions
{
    /// <summary>
    /// Page records per ram PART chunk; each chunk is followed by one FlushAsync, so this also bounds what the writer
    /// buffers before backpressure applies: 256 × ~4.1 KiB ≈ 1 MiB. QEMU's own chunks are "≤ 50 ms of work"
    /// (ram.c MAX_WAIT); the destination does not care about chunk sizes.
    /// </summary>
    public int PagesPerChunk { get; init; } = 256;

    /// <summary>
    /// Blocks up to this size get an explicit ZERO record for each zero page; larger blocks skip zero pages.
    /// The destination's main RAM is fresh anonymous memory (zero), so skipping is exact there. Small blocks are
    /// ROMs and ACPI tables that the destination QEMU fills from its own firmware images at machine init; a page
    /// that is zero on the source must be cleared there (ram.c ram_handle_compressed writes a ZERO page only if it
    /// is not already zero, so this costs the destination nothing). 16 MiB covers every ROM/ACPI block of a q35/pc
    /// machine ([V] the largest is pc.bios at 256 KiB) and stays far below any guest RAM size.
    /// </summary>
    public long ExplicitZeroMaxBlockBytes { get; init; } = 16L << 20;

    /// <summary>Device region bytes written per flush.</summary>
    public int DeviceRegionSliceBytes { get; init; } = 64 * 1024;
}

/// <summary>Counters of one <see cref="QemuStreamWriter"/> run.</summary>
public sealed class QemuStreamWriterStatistics
{
    public long PageRecords { get; internal set; }
    public long ZeroRecords { get; internal set; }
    public long SkippedZeroPages { get; internal set; }
    public long Chunks { get; internal set; }
    public long BytesWritten { get; internal set; }
}

/// <summary>
/// Rebuilds a QEMU 7.2 precopy migration stream that a destination started with <c>-incoming</c> accepts:
/// <code>
/// preamble (file header + configuration, verbatim)
/// 0x01 START  be32 id, counted "ram", be32 instance, be32 version | be64 total|MEM_SIZE, {counted name, be64 used_length}*,
///             be64 EOS | 0x7E be32 id
/// {0x02 PART  be32 id | {be64 offset|PAGE[|CONTINUE], [counted name], 4096 bytes}* (or ZERO + u8 0), be64 EOS | 0x7E be32 id}*
/// device region (FULL sections, EOF, vmdesc; verbatim)
/// </code>
/// The section id, idstr, instance and version of "ram" are the source's (note §4: the destination resolves PART by
/// the number it saw in START). No END chunk: a background-snapshot stream has none either and the destination does
/// not need one (note §8.2). Writes go straight into the PipeWriter's memory: the page source fills the output
/// buffer, and a zero page is simply not advanced over.
/// </summary>
public sealed class QemuStreamWriter
{
    private const int PageSize = F.TargetPageSize;

    private readonly PipeWriter _output;
    private readonly QemuStreamWriterOptions _options;

    /// <summary>Block named by the last written page record: the next record in it uses CONTINUE (ram.c save_page_header).</summary>
    private int _lastBlock = -1;

    /// <summary>A START/PART header was written and its EOS + footer not yet.</summary>
    private bool _chunkOpen;

    public QemuStreamWriter(PipeWriter output, QemuStreamWriterOptions? options = null)
    {
        _output = output;
        _options = options ?? new QemuStreamWriterOptions();
        if (_options.PagesPerChunk < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.PagesPerChunk, "PagesPerChunk must be at least 1.");
        }
    }

    public QemuStreamWriterStatistics Statistics { get; } = new();

    /// <summary>Writes a whole stream to a Stream (e.g. a socket to QEMU's <c>-incoming unix:</c>); leaves it open.</summary>
    public static async Task<QemuStreamWriterStatistics> WriteAsync(DeviceStateBlob blob, IRamSource ram, Stream output,
        QemuStreamWriterOptions? options = null, CancellationToken ct = default)
    {
        var pipe = PipeWriter.Create(output, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true));
        var writer = new QemuStreamWriter(pipe, options);
        try
        {
            await writer.WriteAsync(blob, ram, ct);
        }
        finally
        {
            await pipe.CompleteAsync();
        }

        return writer.Statistics;
    }

    /// <summary>Writes a whole stream; flushes at the end but does not complete the PipeWriter (its owner does).</summary>
    public async Task WriteAsync(DeviceStateBlob blob, IRamSource ram, CancellationToken ct = default)
    {
        if (blob.TargetPageSize != PageSize)
        {
            throw new NotSupportedException($"Target page size {blob.TargetPageSize} is not supported (only {PageSize}).");
        }

        // Counted strings (qemu-file.c qemu_put_counted_string) hold at most 255 bytes.
        foreach (var name in blob.Blocks.Select(b => b.Name).Append(blob.RamIdStr))
        {
            if (name.Length is 0 or > 255)
            {
                throw new ArgumentException($"RAM block / section name '{name}' does not fit a counted string (1..255 bytes).", nameof(blob));
            }
        }

        Write(blob.Preamble.Span);
        WriteStartChunk(blob);
        await FlushAsync(ct);

        var pagesInChunk = 0;
        for (var block = 0; block < blob.Blocks.Count; block++)
        {
            var info = blob.Blocks[block];
            var nameBytes = Encoding.Latin1.GetBytes(info.Name);
            var explicitZero = info.UsedLength <= _options.ExplicitZeroMaxBlockBytes;
            for (long offset = 0; offset < info.UsedLength; offset += PageSize)
            {
                if (!_chunkOpen)
                {
                    WriteShortHeader(F.SectionPart, blob.RamSectionId);
                }

                if (await WritePageAsync(ram, block, offset, nameBytes, explicitZero, ct))
                {
                    pagesInChunk++;
                }

                if (pagesInChunk == _options.PagesPerChunk)
                {
                    WriteChunkEnd(blob.RamSectionId);
                    await FlushAsync(ct);
                    pagesInChunk = 0;
                }
            }
        }

        if (_chunkOpen)
        {
            // Possibly with no record in it, when every page after its header was skipped: an empty chunk is valid.
            WriteChunkEnd(blob.RamSectionId);
        }

        var region = blob.DeviceRegion;
        while (!region.IsEmpty)
        {
            var slice = region[..Math.Min(region.Length, _options.DeviceRegionSliceBytes)];
            Write(slice.Span);
            region = region[slice.Length..];
            await FlushAsync(ct, last: region.IsEmpty);
        }

        await FlushAsync(ct, last: true);
    }

    /// <summary>One record: PAGE with the source's bytes, or ZERO, or nothing for a skipped zero page.</summary>
    private async ValueTask<bool> WritePageAsync(IRamSource ram, int block, long offset, byte[] name, bool explicitZero, CancellationToken ct)
    {
        var named = block != _lastBlock;
        var headerLength = 8 + (named ? 1 + name.Length : 0);
        var memory = _output.GetMemory(headerLength + PageSize);
        var page = memory.Slice(headerLength, PageSize);
        var hasData = await ram.TryReadPageAsync(block, offset, page, ct) && !ZeroDetector.IsAllZero(page.Span);
        if (!hasData && !explicitZero)
        {
            Statistics.SkippedZeroPages++;
            return false;
        }

        // ram.c save_page_header: be64 (offset | flags), then the counted idstr unless CONTINUE.
        var span = memory.Span;
        var flags = (hasData ? F.RamFlagPage : F.RamFlagZero) | (named ? 0 : F.RamFlagContinue);
        BinaryPrimitives.WriteInt64BigEndian(span, offset | (long)flags);
        if (named)
        {
            span[8] = (byte)name.Length;
            name.CopyTo(span[9..]);
        }

        int length;
        if (hasData)
        {
            // ram.c save_normal_page: the page bytes follow the header (already in place).
            length = headerLength + PageSize;
            Statistics.PageRecords++;
        }
        else
        {
            // ram.c save_zero_page_to_file: one fill byte, 0.
            span[headerLength] = 0;
            length = headerLength + 1;
            Statistics.ZeroRecords++;
        }

        _output.Advance(length);
        Statistics.BytesWritten += length;
        _lastBlock = block;
        return true;
    }

    // ram.c ram_save_setup: MEM_SIZE with the total of used_length, one entry per block, EOS; savevm.c
    // save_section_header (full form) and save_section_footer around it.
    private void WriteStartChunk(DeviceStateBlob blob)
    {
        var idStr = Encoding.Latin1.GetBytes(blob.RamIdStr);
        var span = Reserve(1 + 4 + 1 + idStr.Length + 4 + 4 + 8);
        span[0] = F.SectionStart;
        BinaryPrimitives.WriteUInt32BigEndian(span[1..], blob.RamSectionId);
        span[5] = (byte)idStr.Length;
        idStr.CopyTo(span[6..]);
        var pos = 6 + idStr.Length;
        BinaryPrimitives.WriteUInt32BigEndian(span[pos..], blob.RamInstanceId);
        BinaryPrimitives.WriteUInt32BigEndian(span[(pos + 4)..], blob.RamVersion);
        long total = 0;
        foreach (var block in blob.Blocks)
        {
            total += block.UsedLength;
        }

        BinaryPrimitives.WriteInt64BigEndian(span[(pos + 8)..], total | F.RamFlagMemSize);
        Commit(span.Length);
        foreach (var block in blob.Blocks)
        {
            var name = Encoding.Latin1.GetBytes(block.Name);
            var entry = Reserve(1 + name.Length + 8);
            entry[0] = (byte)name.Length;
            name.CopyTo(entry[1..]);
            BinaryPrimitives.WriteInt64BigEndian(entry[(1 + name.Length)..], block.UsedLength);
            Commit(entry.Length);
        }

        _chunkOpen = true;
        WriteChunkEnd(blob.RamSectionId);
    }

    private void WriteShortHeader(byte type, uint sectionId)
    {
        var span = Reserve(5);
        span[0] = type;
        BinaryPrimitives.WriteUInt32BigEndian(span[1..], sectionId);
        Commit(5);
        _chunkOpen = true;
    }

    /// <summary>be64 EOS, then the footer 0x7E be32 id (savevm.c save_section_footer).</summary>
    private void WriteChunkEnd(uint sectionId)
    {
        var span = Reserve(8 + 5);
        BinaryPrimitives.WriteInt64BigEndian(span, F.RamFlagEos);
        span[8] = F.SectionFooter;
        BinaryPrimitives.WriteUInt32BigEndian(span[9..], sectionId);
        Commit(13);
        Statistics.Chunks++;
        _chunkOpen = false;
    }

    private Span<byte> Reserve(int length) => _output.GetSpan(length)[..length];

    private void Commit(int length)
    {
        _output.Advance(length);
        Statistics.BytesWritten += length;
    }

    private void Write(ReadOnlySpan<byte> bytes)
    {
        _output.Write(bytes);
        Statistics.BytesWritten += bytes.Length;
    }

    // last: after the last byte, a reader that already finished (QEMU closes once it loaded EOF) is fine.
    private async ValueTask FlushAsync(CancellationToken ct, bool last = false)
    {
        var result = await _output.FlushAsync(ct);
        if (result.IsCanceled)
        {
            throw new OperationCanceledException("Writing the QEMU stream was canceled.", ct);
        }

        if (result.IsCompleted && !last)
        {
            throw new IOException("The reader of the rebuilt QEMU stream went away before the stream was complete.");
        }
    }
}
