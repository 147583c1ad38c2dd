using System.Diagnostics;
using System.IO.Pipelines;
using StreamClone.Qemu.Migration;
using F = StreamClone.Qemu.Migration.QemuStreamFormat;

namespace StreamClone.Tests.Unit.QemuStream;

/// <summary>
/// Repeatable reader throughput run: a synthetic snapshot stream of <c>pageCount</c> non-zero pages is produced into a
/// Pipe (from one reused 4 MiB template of PART chunks, so the producer costs one memcpy per byte, like a socket
/// receive) while <see cref="QemuStreamReader"/> parses it into a sink that only counts. Reports MB/s and the bytes
/// allocated during the run. Run it in Release:
/// <c>dotnet build -c Release tests/StreamClone.Tests.Unit &amp;&amp;
/// tests/StreamClone.Tests.Unit/bin/Release/net10.0/StreamClone.Tests.Unit -method "*Reader_throughput*" -explicit only</c>.
/// Timings never gate a test (style §13); the allocation figure is the budget to watch (0 per page).
/// </summary>
public class QemuStreamThroughput
{
    public sealed record Result(long Bytes, long Pages, TimeSpan Elapsed, long AllocatedBytes, long StraddledPages)
    {
        public double MegabytesPerSecond => Bytes / 1e6 / Elapsed.TotalSeconds;

        public override string ToString() =>
            $"{Bytes / (1 << 20)} MiB, {Pages} pages in {Elapsed.TotalMilliseconds:F0} ms = {MegabytesPerSecond:F0} MB/s; " +
            $"allocated {AllocatedBytes} bytes; straddled pages {StraddledPages}";
    }

    /// <param name="pageCount">Non-zero pages in the stream (262 000 ≈ 1 GiB).</param>
    /// <param name="segmentSize">The pipe's minimum segment size (a socket loop's receive size).</param>
    /// <param name="baseline">Replace the reader by a consumer that only advances: the pipe's own cost.</param>
    /// <param name="ct">Cancels the run.</param>
    public static async Task<Result> RunAsync(long pageCount, int segmentSize, bool baseline, CancellationToken ct)
    {
        const int pagesPerChunk = 1000;
        var blockPages = pagesPerChunk;
        var preamble = new QemuStreamBuilder().FileHeader().Configuration().RamStart(2, ("pc.ram", blockPages * 4096L)).ToArray();
        var chunk = new QemuStreamBuilder().ShortHeader(F.SectionPart, 2);
        var page = QemuStreamBuilder.PatternPage(7);
        for (var i = 0; i < pagesPerChunk; i++)
        {
            chunk = i == 0 ? chunk.Page("pc.ram", 0, page) : chunk.Page(null, i * 4096L, page);
        }

        var chunkBytes = chunk.Eos().Footer(2).ToArray();
        var tail = new QemuStreamBuilder().Full(0, "timer", [1, 2, 3]).Eof().VmDescription("{\"page_size\":4096,\"devices\":[]}").ToArray();
        var chunks = pageCount / pagesPerChunk;

        // 16 segments in flight: few enough that returned segments fit ArrayPool.Shared's per-core caches, so the
        // pipe's own memory does not show up as allocations (with thousands in flight, most returns are dropped).
        var pipe = new Pipe(new PipeOptions(minimumSegmentSize: segmentSize, pauseWriterThreshold: 16L * segmentSize,
            resumeWriterThreshold: 8L * segmentSize, useSynchronizationContext: false));
        var sink = new CountingSink();
        var reader = new QemuStreamReader(pipe.Reader, sink);

        GC.Collect();
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        var stopwatch = Stopwatch.StartNew();
        var produce = Task.Run(async () =>
        {
            await pipe.Writer.WriteAsync(preamble, ct);
            for (long c = 0; c < chunks; c++)
            {
                await pipe.Writer.WriteAsync(chunkBytes, ct);
            }

            await pipe.Writer.WriteAsync(tail, ct);
            await pipe.Writer.CompleteAsync();
        }, ct);
        if (baseline)
        {
            while (true)
            {
                var read = await pipe.Reader.ReadAsync(ct);
                pipe.Reader.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted)
                {
                    break;
                }
            }
        }
        else
        {
            await reader.ReadToEndAsync(ct);
        }

        await produce;
        stopwatch.Stop();
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        await pipe.Reader.CompleteAsync();
        var bytes = preamble.Length + (chunks * chunkBytes.Length) + tail.Length;
        return new Result(bytes, baseline ? chunks * pagesPerChunk : sink.Pages, stopwatch.Elapsed, allocated, reader.Statistics.StraddledPages);
    }

    /// <summary>
    /// Runs the throughput harness small (64 MiB of pages per segment size) and checks the reader
    /// sees every page whatever the segmentation; the figures go to the test output. For the 1 GiB
    /// figures call <see cref="RunAsync"/> with 262 000 pages (see the README's table).
    /// </summary>
    [Fact]
    public async Task Reader_sees_every_page_at_every_segment_size()
    {
        var ct = TestContext.Current.CancellationToken;
        foreach (var segment in new[] { 4096, 64 * 1024, 1 << 20 })
        {
            var result = await RunAsync(16_000, segment, baseline: false, ct);
            TestContext.Current.TestOutputHelper?.WriteLine($"segment {segment}: {result}");
            Assert.Equal(16_000, result.Pages);
        }
    }

    private sealed class CountingSink : IMigrationStreamSink
    {
        public long Pages;
        public long Checksum;

        public ValueTask OnRamBlocksAsync(IReadOnlyList<RamBlockInfo> blocks, CancellationToken ct) => default;

        public ValueTask OnPageAsync(int blockIndex, long offset, ReadOnlyMemory<byte> page, CancellationToken ct)
        {
            Pages++;
            Checksum += page.Span[4095];
            return default;
        }

        public ValueTask OnFilledPageAsync(int blockIndex, long offset, byte fill, CancellationToken ct) => default;

        public ValueTask OnDeviceStateAsync(DeviceStateBlob blob, CancellationToken ct) => default;
    }
}
