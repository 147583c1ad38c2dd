using System.Buffers;
using StreamClone.Shared.Protocol;
using ZstdSharp;

namespace StreamClone.Shared.Chunking;

/// <summary>
/// zstd for batch payloads. ZstdSharp's Compressor/Decompressor hold native-sized contexts that are
/// costly to create, so each thread keeps one per level (the dataflow blocks run on a bounded set of
/// pool threads).
/// </summary>
public static class BatchCodec
{
    [ThreadStatic] private static Compressor? t_compressor;
    [ThreadStatic] private static int t_level;
    [ThreadStatic] private static Decompressor? t_decompressor;

    public static int MaxCompressedLength(int rawLength) => Compressor.GetCompressBound(rawLength);

    /// <summary>
    /// Compresses <paramref name="raw"/> into <paramref name="destination"/>; returns the codec used
    /// and bytes written. Falls back to <see cref="PayloadCodec.None"/> (a copy) when zstd does not
    /// shrink the data, so random pages cost no decompression on the sink.
    /// </summary>
    public static (PayloadCodec Codec, int Length) Compress(ReadOnlySpan<byte> raw, Span<byte> destination, int level)
    {
        if (level == 0)
        {
            raw.CopyTo(destination);
            return (PayloadCodec.None, raw.Length);
        }
        var written = CompressorFor(level).Wrap(raw, destination);
        if (written >= raw.Length)
        {
            raw.CopyTo(destination);
            return (PayloadCodec.None, raw.Length);
        }
        return (PayloadCodec.Zstd, written);
    }

    /// <summary>
    /// Compresses the concatenation of <paramref name="raw"/>'s <paramref name="runs"/>, in order, as
    /// one zstd frame: the payload <see cref="Compress"/> makes of that concatenation (same frame
    /// header with its content size, same level, same 128 KiB blocks), which the sink decodes as
    /// before, without first copying the runs into one buffer. A batch's Data chunks lie in its raw
    /// buffer between Zero and Known ones; each run of consecutive Data chunks is one span.
    /// <para>
    /// One run takes zstd's one-shot path (<c>ZSTD_compress2</c>) and copies nothing. Several go
    /// through <c>ZSTD_compressStream2</c>, which copies each run into the context's window buffer
    /// and compresses each block as it fills: the same bytes moved as the old staging copy, but into
    /// a per-thread buffer that stays in cache, with no batch-sized staging buffer rented per batch.
    /// Falls back to <see cref="PayloadCodec.None"/> (the runs copied back to back) when zstd does
    /// not shrink them, as <see cref="Compress"/> does.
    /// </para>
    /// The destination must hold at least <see cref="MaxCompressedLength"/> of the runs' total.
    /// </summary>
    public static (PayloadCodec Codec, int Length) CompressRuns(ReadOnlySpan<byte> raw, ReadOnlySpan<Range> runs, Span<byte> destination, int level)
    {
        var total = 0;
        foreach (var run in runs)
        {
            total = checked(total + raw[run].Length);
        }
        if (runs.Length == 1)
        {
            return Compress(raw[runs[0]], destination, level);
        }
        if (total == 0)
        {
            return (PayloadCodec.None, 0);
        }
        if (level != 0)
        {
            var written = CompressStreamed(raw, runs, total, destination, level);
            if (written < total)
            {
                return (PayloadCodec.Zstd, written);
            }
        }
        var at = 0;
        foreach (var run in runs)
        {
            var bytes = raw[run];
            bytes.CopyTo(destination[at..]);
            at += bytes.Length;
        }
        return (PayloadCodec.None, total);
    }

    private static int CompressStreamed(ReadOnlySpan<byte> raw, ReadOnlySpan<Range> runs, int total, Span<byte> destination, int level)
    {
        if (destination.Length < MaxCompressedLength(total))
        {
            throw new ArgumentException($"destination of {destination.Length} bytes is under the zstd bound for {total}", nameof(destination));
        }
        var compressor = CompressorFor(level);
        var written = 0;
        try
        {
            // Without the pledge the frame header would not carry its content size, which the sink
            // requires (it refuses a frame that does not declare a size within the header's RawLength).
            compressor.SetPledgedSrcSize((ulong)total);
            for (var i = 0; i < runs.Length; i++)
            {
                var input = raw[runs[i]];
                var last = i == runs.Length - 1;
                while (true)
                {
                    var status = compressor.WrapStream(input, destination[written..], out var consumed, out var produced, last);
                    written += produced;
                    input = input[consumed..];
                    if (status == OperationStatus.Done || (!last && input.IsEmpty && status == OperationStatus.NeedMoreData))
                    {
                        break;
                    }
                    if (status != OperationStatus.NeedMoreData)
                    {
                        // The destination is at least the bound, so neither happens unless zstd fails.
                        throw new InvalidOperationException($"zstd streaming compression stopped with {status} after {written} bytes");
                    }
                }
            }
        }
        catch
        {
            // The context is mid-frame: drop it rather than reuse it.
            compressor.Dispose();
            t_compressor = null;
            throw;
        }
        return written;
    }

    private static Compressor CompressorFor(int level)
    {
        var compressor = t_compressor;
        if (compressor is null || t_level != level)
        {
            compressor?.Dispose();
            compressor = t_compressor = new Compressor(level);
            t_level = level;
        }
        return compressor;
    }

    /// <summary>Decompresses exactly <paramref name="destination"/>.Length bytes or throws a protocol violation.</summary>
    public static void Decompress(PayloadCodec codec, ReadOnlySpan<byte> payload, Span<byte> destination)
    {
        switch (codec)
        {
            case PayloadCodec.None:
                if (payload.Length != destination.Length)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.DecompressionFailed,
                        $"uncompressed payload has {payload.Length} bytes, header says {destination.Length}");
                }
                payload.CopyTo(destination);
                return;
            case PayloadCodec.Zstd:
                var decompressor = t_decompressor ??= new Decompressor();
                int written;
                try
                {
                    // The frame header declares its content size (our encoder's frames always do:
                    // ZSTD_c_contentSizeFlag is on by default); refuse a larger claim before
                    // decompressing rather than trust it. The destination is the header's RawLength,
                    // already capped at WireLimits.MaxBatchRawBytes, so output can never exceed it.
                    var declared = Decompressor.GetDecompressedSize(payload);
                    if (declared > (ulong)destination.Length)
                    {
                        ThrowHelper.ThrowProtocol(ProtocolError.DecompressionFailed,
                            $"zstd frame declares {declared} bytes, header says {destination.Length}");
                    }
                    written = decompressor.Unwrap(payload, destination);
                }
                catch (ZstdException ex)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.DecompressionFailed, $"zstd: {ex.Message}");
                    return;
                }
                if (written != destination.Length)
                {
                    ThrowHelper.ThrowProtocol(ProtocolError.DecompressionFailed,
                        $"zstd produced {written} bytes, header says {destination.Length}");
                }
                return;
            default:
                ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, $"unknown payload codec {(byte)codec}");
                return;
        }
    }
}
