using System.IO.Pipelines;
using CsCheck;
using StreamClone.Qemu.Migration;
using static StreamClone.Tests.Unit.QemuStream.QemuStreamVectors;

namespace StreamClone.Tests.Unit.QemuStream;

public class QemuStreamWriterTests
{
    private static DeviceStateBlob Blob(params RamBlockInfo[] blocks) =>
        new(Preamble(), RamId, "ram", 0, 4, 4096, blocks, DeviceRegion());

    /// <summary>Writer → Pipe → reader, concurrently (the pipe's default pause threshold bounds the writer).</summary>
    private static async Task<(PageStore Read, QemuStreamWriterStatistics Written)> RoundTripAsync(
        DeviceStateBlob blob, IRamSource ram, QemuStreamWriterOptions? options = null)
    {
        var ct = TestContext.Current.CancellationToken;
        var pipe = new Pipe(new PipeOptions(useSynchronizationContext: false));
        var writer = new QemuStreamWriter(pipe.Writer, options);
        var write = Task.Run(async () =>
        {
            try
            {
                await writer.WriteAsync(blob, ram, ct);
            }
            finally
            {
                await pipe.Writer.CompleteAsync();
            }
        }, ct);
        var store = new PageStore();
        // The writer omits zero pages on purpose (the destination's RAM starts zeroed).
        await new QemuStreamReader(pipe.Reader, store, new QemuStreamReaderOptions { RequireEveryPage = false }).ReadToEndAsync(ct);
        await write;
        return (store, writer.Statistics);
    }

    [Fact]
    public async Task Random_RAM_round_trips_through_writer_and_reader()
    {
        var gen = Gen.Select(Gen.Int[1, 3], Gen.Int[1, 8], Gen.Bool, Gen.Int);
        await gen.SampleAsync(async (blockCount, pagesPerChunk, explicitZero, seed) =>
        {
            var random = new Random(seed);
            var blocks = Enumerable.Range(0, blockCount)
                .Select(i => new RamBlockInfo(i == 0 ? "pc.ram" : $"/rom@etc/blob{i}", random.Next(1, 40) * 4096L))
                .ToArray();
            var source = new PageStore();
            foreach (var (block, index) in blocks.Select((b, i) => (b, i)))
            {
                for (long offset = 0; offset < block.UsedLength; offset += 4096)
                {
                    var kind = random.Next(10);
                    if (kind < 6)
                    {
                        continue; // zero page
                    }

                    var page = new byte[4096];
                    if (kind < 9)
                    {
                        random.NextBytes(page);
                    }
                    else
                    {
                        page.AsSpan().Fill((byte)random.Next(1, 256));
                    }

                    source.Pages[(index, offset)] = page;
                }
            }

            var options = new QemuStreamWriterOptions
            {
                PagesPerChunk = pagesPerChunk,
                ExplicitZeroMaxBlockBytes = explicitZero ? long.MaxValue : 0,
            };
            var (read, written) = await RoundTripAsync(Blob(blocks), source, options);

            Assert.Equal(blocks, read.Blocks);
            Assert.Equal(source.Pages.Keys.Order(), read.Pages.Keys.Order());
            foreach (var (key, page) in source.Pages)
            {
                Assert.Equal(page, read.Pages[key]);
            }

            var totalPages = blocks.Sum(b => b.UsedLength / 4096);
            Assert.Equal(source.Pages.Count, written.PageRecords);
            Assert.Equal(totalPages - source.Pages.Count, written.ZeroRecords + written.SkippedZeroPages);
            Assert.Equal(0, explicitZero ? written.SkippedZeroPages : written.ZeroRecords);
            Assert.Equal(0, read.Duplicates);
            Assert.Null(read.OrderError);
            Assert.Equal(Preamble(), read.DeviceState!.Preamble.ToArray());
            Assert.Equal(DeviceRegion(), read.DeviceState.DeviceRegion.ToArray());
            Assert.Equal((RamId, 0u, 4u), (read.DeviceState.RamSectionId, read.DeviceState.RamInstanceId, read.DeviceState.RamVersion));
        }, iter: 60);
    }

    [Fact]
    public async Task Small_blocks_get_explicit_zero_records_and_large_blocks_skip_zero_pages()
    {
        var source = new PageStore();
        source.Pages[(0, 4096)] = P1;
        source.Pages[(1, 0)] = P2;
        var blob = Blob(new RamBlockInfo("pc.ram", 64 * 4096), new RamBlockInfo("pc.bios", 4 * 4096));

        var (read, written) = await RoundTripAsync(blob, source, new QemuStreamWriterOptions { ExplicitZeroMaxBlockBytes = 16 * 4096 });

        Assert.Equal(2, written.PageRecords);
        Assert.Equal(3, written.ZeroRecords); // pc.bios pages 1..3
        Assert.Equal(63, written.SkippedZeroPages);
        Assert.Equal(3, read.FilledRecords);
        Assert.Equal(P1, read.Pages[(0, 4096)]);
        Assert.Equal(P2, read.Pages[(1, 0)]);
    }

    [Fact]
    public async Task A_page_the_source_fills_with_zeros_is_treated_as_zero()
    {
        var source = new PageStore();
        source.Pages[(0, 0)] = new byte[4096];

        var (read, written) = await RoundTripAsync(Blob(new RamBlockInfo("pc.ram", 4096)), source,
            new QemuStreamWriterOptions { ExplicitZeroMaxBlockBytes = 0 });

        Assert.Equal(0, written.PageRecords);
        Assert.Equal(1, written.SkippedZeroPages);
        Assert.Empty(read.Pages);
    }

    [Fact]
    public async Task Written_stream_has_the_expected_bytes_for_a_one_page_snapshot()
    {
        var source = new PageStore();
        source.Pages[(0, 0)] = P1;
        var blob = Blob(new RamBlockInfo("pc.ram", 4096));
        var output = new MemoryStream();

        await QemuStreamWriter.WriteAsync(blob, source, output, ct: TestContext.Current.CancellationToken);

        var expected = new QemuStreamBuilder()
            .Bytes(Preamble())
            .RamStart(RamId, ("pc.ram", 4096))
            .ShortHeader(0x02, RamId).Page("pc.ram", 0, P1).Eos().Footer(RamId)
            .Bytes(DeviceRegion())
            .ToArray();
        Assert.Equal(expected, output.ToArray());
    }
}
