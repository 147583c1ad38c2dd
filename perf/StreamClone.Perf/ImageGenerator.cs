using System.Diagnostics;

namespace StreamClone.Perf;

/// <summary>
/// Writes a seeded, repeatable test image that looks like guest memory or a disk: runs of zero,
/// text, code, structured, random and duplicate pages (see <see cref="ProfileMix"/> for the mix).
/// Same size, profile and seed give the same bytes. Memory stays bounded whatever the size: two
/// 4 MiB blocks (one filling while the other is written), two 2 MiB content pools and the 8 MiB
/// reservoir that duplicates are drawn from.
/// </summary>
public static class ImageGenerator
{
    public const int PageSize = PageSynthesizer.PageSize;

    /// <summary>
    /// 1,024 pages (4 MiB) per write: one syscall per block is noise next to filling it, and two
    /// blocks, the pools and the reservoir keep the whole generator near 20 MiB (measured: 70 MB
    /// RSS for a 4 GiB image, runtime included).
    /// </summary>
    internal const int BlockPages = 1024;

    public static async Task<ImageSummary> GenerateAsync(string path, long size, ImageProfile profile, int seed, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (size < 0 || size % PageSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, $"image size must be a non-negative multiple of {PageSize}");
        }

        var stopwatch = Stopwatch.StartNew();
        var source = new PageSource(profile, seed);
        var blocks = new[] { new byte[BlockPages * PageSize], new byte[BlockPages * PageSize] };
        await using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 0, FileOptions.Asynchronous);
        var pending = Task.CompletedTask;
        var next = 0;
        for (long written = 0; written < size; next ^= 1)
        {
            ct.ThrowIfCancellationRequested();
            var pages = (int)Math.Min(BlockPages, (size - written) / PageSize);
            var block = blocks[next].AsMemory(0, pages * PageSize);
            source.Fill(block.Span);
            // The previous block's write ran while this one was filled; its buffer is reused next.
            await pending;
            pending = file.WriteAsync(block, ct).AsTask();
            written += block.Length;
        }
        await pending;
        return new ImageSummary(path, size, profile, seed, source.PagesByKind, stopwatch.Elapsed);
    }
}
