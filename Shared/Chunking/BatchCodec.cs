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
        var compressor = t_compressor;
        if (compressor is null || t_level != level)
        {
            compressor?.Dispose();
            compressor = t_compressor = new Compressor(level);
            t_level = level;
        }
        var written = compressor.Wrap(raw, destination);
        if (written >= raw.Length)
        {
            raw.CopyTo(destination);
            return (PayloadCodec.None, raw.Length);
        }
        return (PayloadCodec.Zstd, written);
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
