using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;

namespace StreamClone.Perf;

/// <summary>In-memory samples of generated images, for benchmarks that need realistic bytes without a file.</summary>
public static class MemoryImageSample
{
    /// <summary>
    /// Fills <paramref name="destination"/> (a multiple of 4 KiB) with the pages of a Memory-profile
    /// image that would travel as Data (neither zero nor a repeat of an earlier page), in order:
    /// what a batch's payload looks like before compression.
    /// </summary>
    public static void FillDataPages(Span<byte> destination, int seed)
    {
        const int Page = PageSynthesizer.PageSize;
        if (destination.Length % Page != 0)
        {
            throw new ArgumentException($"length must be a multiple of {Page}", nameof(destination));
        }
        var source = new PageSource(ImageProfile.Memory, seed);
        var block = new byte[ImageGenerator.BlockPages * Page];
        var filled = 0;
        var seen = new HashSet<ChunkHash>();
        while (filled < destination.Length)
        {
            source.Fill(block);
            for (var offset = 0; offset < block.Length && filled < destination.Length; offset += Page)
            {
                var page = block.AsSpan(offset, Page);
                if (!ZeroDetector.IsAllZero(page) && seen.Add(ChunkHash.Compute(page)))
                {
                    page.CopyTo(destination[filled..]);
                    filled += Page;
                }
            }
        }
    }
}
