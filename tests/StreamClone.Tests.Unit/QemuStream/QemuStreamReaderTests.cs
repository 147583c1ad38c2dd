using System.IO.Pipelines;
using System.Text;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using static StreamClone.Tests.Unit.QemuStream.QemuStreamVectors;

namespace StreamClone.Tests.Unit.QemuStream;

public class QemuStreamReaderTests
{
    [Fact]
    public async Task Whole_stream_produces_blocks_pages_fills_and_device_state_in_order()
    {
        var sink = await ReadWholeAsync(Snapshot());

        Assert.Equal(SnapshotEvents, sink.Events);
        Assert.Equal([P1, P2, P3, P4], sink.Pages);
    }

    [Fact]
    public async Task Device_state_carries_preamble_ram_identity_and_device_region_verbatim()
    {
        var sink = await ReadWholeAsync(Snapshot());
        var blob = Assert.IsType<DeviceStateBlob>(sink.DeviceState);

        Assert.Equal(Preamble(), blob.Preamble.ToArray());
        Assert.Equal(DeviceRegion(), blob.DeviceRegion.ToArray());
        Assert.Equal(RamId, blob.RamSectionId);
        Assert.Equal("ram", blob.RamIdStr);
        Assert.Equal(0u, blob.RamInstanceId);
        Assert.Equal(4u, blob.RamVersion);
        Assert.Equal(4096, blob.TargetPageSize);
        Assert.Equal([new RamBlockInfo("pc.ram", 16384), new RamBlockInfo("pc.bios", 8192)], blob.Blocks);
        Assert.Equal(VmDesc, Encoding.ASCII.GetString(blob.VmDescription.Span));

        var copy = DeviceStateBlob.Deserialize(blob.Serialize());
        Assert.Equal(blob.Preamble.ToArray(), copy.Preamble.ToArray());
        Assert.Equal(blob.DeviceRegion.ToArray(), copy.DeviceRegion.ToArray());
        Assert.Equal(blob.Blocks, copy.Blocks);
        Assert.Equal((blob.RamSectionId, blob.RamIdStr, blob.RamInstanceId, blob.RamVersion, blob.TargetPageSize),
            (copy.RamSectionId, copy.RamIdStr, copy.RamInstanceId, copy.RamVersion, copy.TargetPageSize));
    }

    [Fact]
    public async Task One_byte_segments_produce_the_same_events()
    {
        var reader = new DripPipeReader(Snapshot(), step: 1, oneByteSegments: true);
        var sink = await ReadAsync(reader);

        Assert.Equal(SnapshotEvents, sink.Events);
        Assert.Equal([P1, P2, P3, P4], sink.Pages);
    }

    [Fact]
    public async Task A_pipe_fed_one_byte_per_write_produces_the_same_events()
    {
        var data = Snapshot();
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
        var ct = TestContext.Current.CancellationToken;
        var feed = Task.Run(async () =>
        {
            for (var i = 0; i < data.Length; i++)
            {
                await pipe.Writer.WriteAsync(data.AsMemory(i, 1), ct);
            }

            await pipe.Writer.CompleteAsync();
        }, ct);

        var sink = await ReadAsync(pipe.Reader);
        await feed;

        Assert.Equal(SnapshotEvents, sink.Events);
        Assert.Equal([P1, P2, P3, P4], sink.Pages);
    }

    [Fact]
    public async Task Every_truncation_point_waits_for_more_then_reports_cut_short()
    {
        var data = Snapshot();
        for (var cut = 0; cut < data.Length; cut++)
        {
            var reader = new DripPipeReader(data, step: cut, oneByteSegments: false, visibleLimit: cut);
            var sink = new RecordingSink();
            var ex = await Assert.ThrowsAsync<QemuStreamException>(
                () => new QemuStreamReader(reader, sink).ReadToEndAsync(TestContext.Current.CancellationToken));

            Assert.True(ex.Message.Contains("cut short", StringComparison.Ordinal), $"cut at {cut}: {ex.Message}");
            Assert.Contains($"offset {cut} ", ex.Message, StringComparison.Ordinal);
            Assert.Equal(cut, ex.Offset);
            Assert.True(reader.NotYetReads >= 1 || cut == 0, $"cut at {cut}: the reader never asked for more");
            // Everything decoded before the cut is a prefix of the full event list, never the device state.
            Assert.Equal(SnapshotEvents.Take(sink.Events.Count), sink.Events);
            Assert.Null(sink.DeviceState);
        }
    }

    [Fact]
    public async Task Every_truncation_point_in_one_byte_drips_is_not_yet_until_the_end()
    {
        // Same stream revealed one byte at a time, but the transport ends at a cut point: one cut per unit kind.
        var data = Snapshot();
        foreach (var cut in new[] { 3, 10, 40, 80, 100, 2000, data.Length - 30, data.Length - 1 })
        {
            var reader = new DripPipeReader(data, step: 1, oneByteSegments: true, visibleLimit: cut);
            var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadAsync(reader));
            Assert.Contains("cut short", ex.Message, StringComparison.Ordinal);
            Assert.Equal(cut, reader.NotYetReads);
        }
    }

    [Fact]
    public async Task Statistics_count_records_chunks_and_out_of_order_pages()
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Snapshot(), TestContext.Current.CancellationToken);
        await pipe.Writer.CompleteAsync();
        var reader = new QemuStreamReader(pipe.Reader, new RecordingSink());
        await reader.ReadToEndAsync(TestContext.Current.CancellationToken);

        var stats = reader.Statistics;
        Assert.Equal(4, stats.PageRecords);
        Assert.Equal(2, stats.FilledRecords);
        Assert.Equal(2, stats.NamedRecords);
        Assert.Equal(4, stats.RamChunks);
        Assert.Equal(Snapshot().Length, stats.BytesRead);
        Assert.Equal(DeviceRegion().Length, stats.DeviceRegionBytes);
        // First record, the jump 0x1000 → 0x3000, back to 0x2000, block switch to pc.bios, back to offset 0.
        Assert.Equal(5, stats.OutOfOrderRecords);
    }

    [Fact]
    public async Task Without_configuration_section_the_preamble_is_the_header_alone()
    {
        var data = new QemuStreamBuilder().FileHeader()
            .RamStart(7, ("pc.ram", 4096))
            .ShortHeader(0x03, 7).Page("pc.ram", 0, P1).Eos().Footer(7)
            .Bytes(DeviceRegion()).ToArray();

        var sink = await ReadWholeAsync(data);

        Assert.Equal(new QemuStreamBuilder().FileHeader().ToArray(), sink.DeviceState!.Preamble.ToArray());
        Assert.Equal(["blocks pc.ram:4096", "page 0 0", $"device {DeviceRegion().Length}"], sink.Events);
    }

    [Fact]
    public async Task Configuration_with_capabilities_and_uuid_is_kept_verbatim()
    {
        var preamble = new QemuStreamBuilder().FileHeader()
            .Configuration("pc-i440fx-7.2", capabilities: [], uuid: new byte[16]).ToArray();
        var data = new QemuStreamBuilder().Bytes(preamble).RamStart(2, ("pc.ram", 4096))
            .ShortHeader(0x02, 2).Zero("pc.ram", 0).Eos().Footer(2)
            .Bytes(DeviceRegion()).ToArray();

        var sink = await ReadWholeAsync(data);

        Assert.Equal(preamble, sink.DeviceState!.Preamble.ToArray());
    }

    [Fact]
    public async Task Device_region_ending_in_bare_EOF_is_accepted_only_when_vmdesc_is_not_required()
    {
        var data = new QemuStreamBuilder().Bytes(Preamble()).RamStart(2, ("pc.ram", 4096))
            .ShortHeader(0x02, 2).Zero("pc.ram", 0).Eos().Footer(2)
            .Full(0, "timer", [1, 2, 3]).Eof().ToArray();

        var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadWholeAsync(data));
        Assert.Contains("cut short", ex.Message, StringComparison.Ordinal);
        Assert.Contains("vmdesc", ex.Message, StringComparison.Ordinal);

        var sink = await ReadWholeAsync(data, new QemuStreamReaderOptions { RequireVmDescription = false });
        Assert.True(sink.DeviceState!.VmDescription.IsEmpty);
    }

    /// <summary>
    /// A stream whose device region is <paramref name="regionBytes"/> long: a FULL section of filler, EOF and a vmdesc.
    /// </summary>
    private static byte[] StreamWithDeviceRegion(long regionBytes)
    {
        // FULL header (1 + 4 + counted "big" + 4 + 4) + body + footer (5), EOF (1), vmdesc (1 + 4 + "{}").
        const int overhead = 1 + 4 + 1 + 3 + 4 + 4 + 5 + 1 + 1 + 4 + 2;
        var builder = new QemuStreamBuilder().Bytes(Preamble()).RamStart(2, ("pc.ram", 4096))
            .ShortHeader(0x02, 2).Zero("pc.ram", 0).Eos().Footer(2);
        var start = builder.Length;
        builder.Full(0, "big", new byte[regionBytes - overhead]).Eof().VmDescription("{}");
        Assert.Equal(regionBytes, builder.Length - start);
        return builder.ToArray();
    }

    /// <summary>The cap the reader applies for this test's preamble and block list: what still fits the device-state object.</summary>
    private static long RegionCap() =>
        DeviceStateObject.MaxDeviceRegionBytes(DeviceStateBlob.HeaderLength(Preamble().Length, "ram", [new RamBlockInfo("pc.ram", 4096)]));

    [Fact]
    public async Task The_reader_takes_a_device_region_up_to_exactly_what_the_device_state_object_holds()
    {
        var cap = RegionCap();
        Assert.True(cap > WireLimits.MaxDeviceStateBytes - 200, $"cap {cap}: the header costs only bytes");

        foreach (var regionBytes in new[] { cap - 1, cap })
        {
            var sink = await ReadWholeAsync(StreamWithDeviceRegion(regionBytes));
            var blob = sink.DeviceState!;
            Assert.Equal(regionBytes, blob.DeviceRegion.Length);
            // What the reader took, Pack takes, and the object it fills is at most the capacity (at the cap: exactly).
            Assert.True(DeviceStateObject.Fits(blob));
            var packed = DeviceStateObject.Pack(blob);
            Assert.Equal(regionBytes == cap ? DeviceStateObject.Capacity : DeviceStateObject.Capacity - 1, packed.Length);
            Assert.Equal(regionBytes, DeviceStateObject.Unpack(packed).DeviceRegion.Length);
        }
    }

    [Fact]
    public async Task The_reader_refuses_a_device_region_one_byte_over_and_Pack_refuses_the_same_state()
    {
        var cap = RegionCap();
        var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadWholeAsync(StreamWithDeviceRegion(cap + 1)));
        Assert.Contains($"device region larger than {cap} bytes", ex.Message, StringComparison.Ordinal);

        // The same preamble, block list and a region one byte longer: Pack and the restore side's reader refuse it too.
        var over = new DeviceStateBlob(Preamble(), 2, "ram", 0, 4, 4096, [new RamBlockInfo("pc.ram", 4096)], new byte[cap + 1]);
        Assert.Equal(DeviceStateObject.MaxBlobBytes + 1, over.SerializedLength);
        Assert.False(DeviceStateObject.Fits(over));
        Assert.Throws<InvalidDataException>(() => DeviceStateObject.Pack(over));
        var serialized = over.Serialize();
        Assert.Contains("exceeds", Assert.Throws<InvalidDataException>(() => DeviceStateBlob.Deserialize(serialized)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_configuration_section_is_taken_up_to_the_preamble_the_device_state_blob_holds()
    {
        // Capabilities of 255-byte names: each subsection adds 256 bytes. The preamble (file header + configuration)
        // is stored verbatim in the device-state blob, whose reader refuses more than MaxPreambleBytes.
        static byte[] WithCapabilities(int count) => new QemuStreamBuilder().FileHeader()
            .Configuration(capabilities: [.. Enumerable.Range(0, count).Select(i => $"{i:D5}".PadRight(255, 'c'))])
            .RamStart(2, ("pc.ram", 4096)).ToArray();
        var fits = (DeviceStateBlob.MaxPreambleBytes - (WithCapabilities(0).Length - new QemuStreamBuilder().RamStart(2, ("pc.ram", 4096)).Length)) / 256;

        var reader = new DripPipeReader(WithCapabilities(fits), step: 4096, oneByteSegments: false);
        var taken = await Assert.ThrowsAsync<QemuStreamException>(() => ReadAsync(reader));
        // Past the configuration and the RAM block list: the stream ends where the next section would start.
        Assert.Contains("cut short", taken.Message, StringComparison.Ordinal);
        Assert.Contains("a section header", taken.Message, StringComparison.Ordinal);

        var over = new DripPipeReader(WithCapabilities(fits + 1), step: 4096, oneByteSegments: false);
        var refused = await Assert.ThrowsAsync<QemuStreamException>(() => ReadAsync(over));
        Assert.Contains("configuration section longer than", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_stream_that_misses_pages_is_refused_unless_allowed()
    {
        // What a multifd stream's main channel looks like to this reader: pages announced, some never sent.
        var data = new QemuStreamBuilder().Bytes(Preamble()).RamStart(2, ("pc.ram", 3 * 4096))
            .ShortHeader(0x02, 2).Page("pc.ram", 0, P1).Zero(null, 0x2000).Eos().Footer(2)
            .Bytes(DeviceRegion()).ToArray();

        var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadWholeAsync(data));
        Assert.Contains("block \"pc.ram\" got 2 of its 3 pages", ex.Message, StringComparison.Ordinal);

        var sink = await ReadWholeAsync(data, new QemuStreamReaderOptions { RequireEveryPage = false });
        Assert.NotNull(sink.DeviceState);
    }

    [Fact]
    public async Task Duplicate_pages_are_delivered_and_counted()
    {
        // Ordinary live migration resends dirtied pages (later copy wins); a background snapshot never does.
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(new QemuStreamBuilder().Bytes(Preamble()).RamStart(2, ("pc.ram", 4096))
            .ShortHeader(0x02, 2).Page("pc.ram", 0, P1).Eos().Footer(2)
            .ShortHeader(0x03, 2).Page(null, 0, P2).Eos().Footer(2)
            .Bytes(DeviceRegion()).ToArray(), TestContext.Current.CancellationToken);
        await pipe.Writer.CompleteAsync();
        var sink = new RecordingSink();
        var reader = new QemuStreamReader(pipe.Reader, sink);
        await reader.ReadToEndAsync(TestContext.Current.CancellationToken);

        Assert.Equal([P1, P2], sink.Pages);
        Assert.Equal(1, reader.Statistics.DuplicateRecords);
    }

    [Fact]
    public async Task A_MEM_SIZE_total_above_the_cap_is_refused_before_sizing_anything()
    {
        var data = new QemuStreamBuilder().Bytes(Preamble()).FullHeader(0x01, 2, "ram", 0, 4)
            .Be64((1UL << 50) | 0x04).ToArray();

        var ex = await Assert.ThrowsAsync<QemuStreamException>(() => ReadWholeAsync(data));
        Assert.Contains("MaxRamBytes", ex.Message, StringComparison.Ordinal);
    }
}
