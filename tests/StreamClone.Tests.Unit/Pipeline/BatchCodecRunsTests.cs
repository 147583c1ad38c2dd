using CsCheck;
using StreamClone.Perf;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Protocol;
using ZstdSharp;

namespace StreamClone.Tests.Unit.Pipeline;

/// <summary>
/// BatchCodec.CompressRuns compresses a batch's Data runs without concatenating them first. The wire
/// format must not change: one zstd frame over the concatenation, declaring its size, decoded by the
/// sink's unchanged BatchCodec.Decompress, and about as small as compressing the concatenation.
/// </summary>
public class BatchCodecRunsTests
{
    private const int Page = 4096;

    /// <summary>64 memory-like pages; runs are the pages whose mask bit is set, grouped when adjacent.</summary>
    private static (byte[] Raw, Range[] Runs, byte[] Concatenated) Layout(ulong dataMask, int seed)
    {
        var raw = new byte[64 * Page];
        MemoryImageSample.FillDataPages(raw, seed);
        var runs = new List<Range>();
        for (var i = 0; i < 64; i++)
        {
            if ((dataMask >> i & 1) == 0)
            {
                continue;
            }
            if (i > 0 && (dataMask >> (i - 1) & 1) != 0)
            {
                runs[^1] = new Range(runs[^1].Start, (i + 1) * Page);
            }
            else
            {
                runs.Add(new Range(i * Page, (i + 1) * Page));
            }
        }
        var concatenated = runs.SelectMany(r => raw[r]).ToArray();
        return (raw, [.. runs], concatenated);
    }

    [Fact]
    public void Any_set_of_runs_decodes_with_the_sinks_decoder_to_their_concatenation()
    {
        Gen.Select(Gen.ULong, Gen.Int[1, 1000], Gen.Int[0, 2].Select(i => new[] { -1, 1, 3 }[i])).Sample((mask, seed, level) =>
        {
            var (raw, runs, concatenated) = Layout(mask, seed);
            var payload = new byte[BatchCodec.MaxCompressedLength(concatenated.Length)];
            var (codec, length) = BatchCodec.CompressRuns(raw, runs, payload, level);

            var restored = new byte[concatenated.Length];
            BatchCodec.Decompress(codec, payload.AsSpan(0, length), restored);
            Assert.Equal(concatenated, restored);
            if (codec == PayloadCodec.Zstd)
            {
                // The sink refuses a frame that does not declare its size.
                Assert.Equal((ulong)concatenated.Length, Decompressor.GetDecompressedSize(payload.AsSpan(0, length)));
            }
        }, iter: 60);
    }

    [Theory]
    [InlineData(0xAAAA_AAAA_AAAA_AAAAUL)]   // every other page: 32 runs of one page
    [InlineData(0xF0F0_F0F0_F0F0_F0F0UL)]   // 8 runs of four pages
    [InlineData(0x0FFF_FFFF_FFFF_FFF0UL)]   // one long run
    [InlineData(0xFFFF_FFFF_FFFF_FFFFUL)]   // the whole batch: one run
    public void Compressing_the_runs_is_about_as_small_as_compressing_their_concatenation(ulong mask)
    {
        var (raw, runs, concatenated) = Layout(mask, seed: 42);
        var streamed = new byte[BatchCodec.MaxCompressedLength(concatenated.Length)];
        var oneShot = new byte[streamed.Length];
        var (streamedCodec, streamedLength) = BatchCodec.CompressRuns(raw, runs, streamed, level: -1);
        var (oneShotCodec, oneShotLength) = BatchCodec.Compress(concatenated, oneShot, level: -1);

        Assert.Equal(oneShotCodec, streamedCodec);
        Assert.True(Math.Abs(streamedLength - oneShotLength) <= (oneShotLength / 100) + 16,
            $"runs compressed to {streamedLength} bytes, their concatenation to {oneShotLength}");
        if (runs.Length == 1)
        {
            // One run takes the one-shot path: the very same bytes.
            Assert.Equal(oneShot.AsSpan(0, oneShotLength).ToArray(), streamed.AsSpan(0, streamedLength).ToArray());
        }
    }

    [Fact]
    public void Runs_that_do_not_shrink_travel_raw_back_to_back()
    {
        var raw = new byte[8 * Page];
        new Random(5).NextBytes(raw);
        Range[] runs = [new(0, Page), new(2 * Page, 5 * Page), new(7 * Page, 8 * Page)];
        var concatenated = runs.SelectMany(r => raw[r]).ToArray();
        foreach (var level in new[] { 0, 1 })
        {
            var payload = new byte[BatchCodec.MaxCompressedLength(concatenated.Length)];
            var (codec, length) = BatchCodec.CompressRuns(raw, runs, payload, level);
            Assert.Equal(PayloadCodec.None, codec);
            Assert.Equal(concatenated, payload.AsSpan(0, length).ToArray());
        }
    }

    [Fact]
    public void No_runs_make_an_empty_payload()
    {
        Assert.Equal((PayloadCodec.None, 0), BatchCodec.CompressRuns(new byte[Page], [], new byte[64], level: 1));
    }

    [Fact]
    public void A_destination_under_the_bound_is_refused_and_the_next_batch_compresses_as_usual()
    {
        var (raw, runs, concatenated) = Layout(0xAAAA_AAAA_AAAA_AAAAUL, seed: 9);
        Assert.Throws<ArgumentException>(() => BatchCodec.CompressRuns(raw, runs, new byte[100], level: 1));

        var payload = new byte[BatchCodec.MaxCompressedLength(concatenated.Length)];
        var (codec, length) = BatchCodec.CompressRuns(raw, runs, payload, level: 1);
        var restored = new byte[concatenated.Length];
        BatchCodec.Decompress(codec, payload.AsSpan(0, length), restored);
        Assert.Equal(concatenated, restored);
    }
}
