using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace StreamClone.Shared;

/// <summary>
/// Every limit on what a peer may ask of us or claim to send, defined once with its reason. The
/// source, the sink, the store and (later) relays check the same rule through the helpers here, so a
/// value one side accepts is never one the other rejects. Transport buffer sizes live in
/// <see cref="TransportOptions"/>; per-node policy (how much disk or how many sessions a node grants)
/// lives in each role's options.
/// </summary>
public static partial class WireLimits
{
    /// <summary>The page size every chunk size is a multiple of (QEMU's target page on x86).</summary>
    public const int PageSize = 4096;

    /// <summary>
    /// Largest chunk: one chunk must fit one batch and one demand answer, whose raw bytes are capped
    /// at <see cref="MaxBatchRawBytes"/>. Every chunk size is checked by <see cref="IsValidChunkSize"/>
    /// (offer, manifest, source options, inputs, demand split), nowhere else.
    /// </summary>
    public const int MaxChunkSize = MaxBatchRawBytes;

    /// <summary>
    /// Most chunks in one batch frame (bulk or demand answer). A batch header costs ~33 bytes per
    /// chunk, so 1024 chunks stay near 34 KiB, far under <see cref="TransportOptions.MaxHeaderBytes"/>.
    /// </summary>
    public const int MaxBatchChunks = 1024;

    /// <summary>
    /// Most uncompressed bytes in one batch: what a receiver allocates to decompress it, whatever the
    /// payload claims. 4 MiB keeps the largest batch (incompressible, stored as is) under
    /// <see cref="TransportOptions.MaxPayloadBytes"/> (8 MiB) and bounds a decompression bomb to 4 MiB
    /// per frame in flight.
    /// </summary>
    public const int MaxBatchRawBytes = 4 << 20;

    /// <summary>Most chunks one demand request may name: one answer is one batch frame.</summary>
    public const int MaxDemandChunks = MaxBatchChunks;

    /// <summary>Most bytes one demand request may cover, for the same reason (one answer, one batch).</summary>
    public const int MaxDemandBytes = MaxBatchRawBytes;

    /// <summary>
    /// Most chunks one demand request may name for objects of <paramref name="chunkSize"/>: the chunk
    /// cap and the byte cap both hold, so 4 KiB chunks allow 1024 per request and 4 MiB chunks one.
    /// The sink splits its reads by this and the source refuses more, so both sides apply one rule.
    /// </summary>
    public static int MaxDemandChunksFor(int chunkSize) =>
        IsValidChunkSize(chunkSize)
            ? Math.Min(MaxDemandChunks, MaxDemandBytes / chunkSize)
            : throw new ArgumentOutOfRangeException(nameof(chunkSize), chunkSize, "not a valid chunk size");

    /// <summary>Hashes per inventory frame: 64 Ki × 32 bytes = 2 MiB, under the payload limit.</summary>
    public const int MaxInventoryHashesPerFrame = 64 * 1024;

    /// <summary>
    /// Longest snapshot id. An id names a directory in every store (snapshots/&lt;id&gt;/) and appears in
    /// log lines and on command lines: 64 characters hold a GUID ("N", 32) with room for a prefix
    /// and stay far under NAME_MAX (255).
    /// </summary>
    public const int MaxSnapshotIdLength = 64;

    /// <summary>
    /// The one snapshot-id rule, as error messages state it. The charset is what makes an id safe as a
    /// directory name without further checks: no '/' or '\0' (cannot leave snapshots/), no '.' (so no
    /// ".", "..", hidden or "x.tmp"-like names that collide with the store's own files), no space or
    /// shell metacharacter; the first character is a letter or digit, so an id never reads as an
    /// option ("-rf") to our CLI or any tool given the path. The offer rule, the store (create and
    /// load), the manifest loader, the source's inputs and the CLI options all call
    /// <see cref="IsValidSnapshotId"/>.
    /// </summary>
    public const string SnapshotIdRule = "1-64 characters of [A-Za-z0-9_-], starting with a letter or digit";

    /// <summary>Session ids pair a bulk lane with its demand lane; they are logged, so they are short.</summary>
    public const int MaxSessionIdLength = 64;

    /// <summary>Object names (RAM block ids, disk names) are shown and logged; QEMU's RAM block ids are at most 255 bytes.</summary>
    public const int MaxObjectNameLength = 256;

    /// <summary>Reattach hints in an offer (<see cref="Protocol.SnapshotOfferMessage.Upstreams"/>): a chain deeper than this
    /// many relays above a node is not a deployment we know of, and each hint costs the child a connection attempt.</summary>
    public const int MaxUpstreamHints = 8;

    /// <summary>Longest "host:port" hint: a DNS name (253) plus ":" and a port.</summary>
    public const int MaxUpstreamHintLength = 260;

    /// <summary>
    /// Objects per snapshot: RAM blocks, disks, firmware and device state. A VM has a handful to a
    /// few dozen; the store's chunk location packs the object ordinal into 16 bits.
    /// </summary>
    public const int MaxObjects = 4096;

    /// <summary>Chunks per object: the store's chunk location packs the index into 32 bits (16 TiB at 4 KiB chunks).</summary>
    public const long MaxChunksPerObject = uint.MaxValue;

    /// <summary>
    /// Largest device-state object: QEMU's non-RAM state as a length-prefixed blob (preamble, RAM
    /// block list, device region). A q35 guest's device region is ~76 KiB; 16 MiB leaves room for
    /// many devices with large state (virtio queues, TPM) while a restore never allocates more for a
    /// value a source chose. The source's stream reader, the blob's region cap, the object's capacity
    /// and the offer rule all use this one number.
    /// </summary>
    public const long MaxDeviceStateBytes = 16L << 20;

    private static readonly SearchValues<char> IdChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");

    /// <summary>True for a usable session id: 1 to <paramref name="maxLength"/> characters of [A-Za-z0-9_-].</summary>
    public static bool IsValidId([NotNullWhen(true)] string? id, int maxLength = MaxSessionIdLength) =>
        !string.IsNullOrEmpty(id) && id.Length <= maxLength && !id.AsSpan().ContainsAnyExcept(IdChars);

    /// <summary>True for a snapshot id that follows <see cref="SnapshotIdRule"/> (and so is safe as a directory name).</summary>
    public static bool IsValidSnapshotId([NotNullWhen(true)] string? id) =>
        IsValidId(id, MaxSnapshotIdLength) && char.IsAsciiLetterOrDigit(id[0]);

    /// <summary>
    /// Throws <see cref="ArgumentException"/> naming the rule when <paramref name="id"/> breaks it: for
    /// ids our own side chooses (source inputs, CLI), where a bad id is the caller's mistake.
    /// </summary>
    public static void ThrowIfInvalidSnapshotId(string? id, [CallerArgumentExpression(nameof(id))] string? paramName = null)
    {
        if (!IsValidSnapshotId(id))
        {
            throw new ArgumentException($"snapshot id '{id}' is not valid: ids are {SnapshotIdRule}", paramName);
        }
    }

    /// <summary>True for a chunk size a multiple of <see cref="PageSize"/> between one page and <see cref="MaxChunkSize"/>.</summary>
    public static bool IsValidChunkSize(int chunkSize) =>
        chunkSize >= PageSize && chunkSize <= MaxChunkSize && chunkSize % PageSize == 0;

    /// <summary>
    /// True when [first, first+count) lies inside [0, total) and is not empty. Written without the
    /// addition, so a hostile first near long.MaxValue cannot wrap around into range.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsValidRange(long first, long count, long total) =>
        first >= 0 && count > 0 && total >= 0 && first < total && count <= total - first;

    /// <summary>
    /// True when a read of up to <paramref name="length"/> bytes at <paramref name="offset"/> starts
    /// inside [0, <paramref name="size"/>] (a read at the very end returns nothing). The read is cut
    /// at <paramref name="size"/>, so only the start and a non-negative length need checking.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsValidReadStart(long offset, int length, long size) =>
        offset >= 0 && length >= 0 && offset <= size;

    /// <summary>Chunks of <paramref name="chunkSize"/> bytes needed for <paramref name="size"/> bytes, without overflow for any non-negative size.</summary>
    public static long ChunkCount(long size, int chunkSize)
    {
        if (size < 0 || chunkSize <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(size), $"size {size} / chunk size {chunkSize}");
        }
        return (size / chunkSize) + (size % chunkSize == 0 ? 0 : 1);
    }
}
