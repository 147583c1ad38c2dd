using System.Runtime.Versioning;
using CsCheck;
using StreamClone.Qemu.Migration;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Chunking;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Source.Inputs;
using StreamClone.Source.Live;
using StreamClone.Source.Pipeline;

namespace StreamClone.Tests.Unit.Pipeline;

/// <summary>
/// Demand ranges from a hostile sink, at every layer they pass: the validator, the batch reader,
/// and each input down to the RAM block's mapping. FirstIndex = 2^63-16 with Count = 16 is the
/// request that once wrapped to offset -65536 (at 4 KiB chunks) and read another block's pages.
/// </summary>
public class DemandBoundsTests
{
    private const long WrappingFirst = long.MaxValue - 15;
    private const int Page = 4096;

    /// <summary>What FirstIndex × chunk size wrapped to: -65536.</summary>
    private const long WrappedOffset = unchecked(WrappingFirst * Page);

    private static readonly List<ObjectInfo> Objects =
    [
        new() { Id = 0, Name = "pc.ram", Kind = ObjectKind.Memory, Size = (1L << 20) + 100, ChunkSize = Page },
        new() { Id = 1, Name = "disk", Kind = ObjectKind.Disk, Size = 64L << 20, ChunkSize = 4 << 20 },
        new() { Id = 2, Name = "rom", Kind = ObjectKind.Memory, Size = 64L << 20, ChunkSize = 64 << 10 },
    ];

    public static TheoryData<int, long, int> HostileRequests => new()
    {
        { 0, WrappingFirst, 16 },
        { 0, long.MaxValue, 1 },
        { 0, long.MinValue, 16 },
        { 0, -1, 2 },
        { 0, 0, 0 },
        { 0, 0, -1 },
        { 0, 0, int.MinValue },
        { 0, 256, 2 },               // the object has 257 chunks: 256+2 runs past its end
        { 0, 0, WireLimits.MaxDemandChunks + 1 },
        { 1, 0, 2 },                 // 8 MiB of 4 MiB chunks: over the byte cap
        { 1, WrappingFirst, 1 },
        { 2, 0, 65 },                // 65 × 64 KiB: over the byte cap
        { 3, 0, 1 },
        { -1, 0, 1 },
        { int.MinValue, 0, 1 },
    };

    [Theory]
    [MemberData(nameof(HostileRequests))]
    public void The_validator_refuses_every_request_outside_the_object_or_over_the_caps(int objectId, long first, int count)
    {
        var request = new DemandRequestMessage { ObjectId = objectId, FirstIndex = first, Count = count };
        var error = Assert.Throws<ProtocolViolationException>(() => DemandLayout.Validate(request, Objects));
        Assert.Equal(ProtocolError.BadChunkPlacement, error.Code);
    }

    [Theory]
    [InlineData(0, 0, 257)]
    [InlineData(0, 256, 1)]
    [InlineData(1, 15, 1)]
    [InlineData(2, 960, 64)]
    public void The_validator_accepts_the_largest_requests_the_sink_sends(int objectId, long first, int count)
    {
        var request = new DemandRequestMessage { ObjectId = objectId, FirstIndex = first, Count = count };
        Assert.Same(Objects[objectId], DemandLayout.Validate(request, Objects));
        Assert.True(count <= WireLimits.MaxDemandChunksFor(Objects[objectId].ChunkSize));
    }

    [Fact]
    public void Whatever_it_accepts_lies_inside_the_object_and_under_both_caps()
    {
        Gen.Select(Gen.Int[-2, 4], Gen.Long, Gen.Int).Sample((objectId, first, count) =>
        {
            var request = new DemandRequestMessage { ObjectId = objectId, FirstIndex = first, Count = count };
            ObjectInfo obj;
            try
            {
                obj = DemandLayout.Validate(request, Objects);
            }
            catch (ProtocolViolationException)
            {
                return true;
            }
            var chunks = ChunkMath.ChunkCount(obj.Size, obj.ChunkSize);
            return first >= 0 && count > 0 && first < chunks && count <= chunks - first
                && count <= WireLimits.MaxDemandChunks && (long)count * obj.ChunkSize <= WireLimits.MaxDemandBytes;
        });
    }

    [Fact]
    public async Task The_batch_reader_refuses_a_wrapping_range_before_the_input_sees_it()
    {
        using var dir = new TempDir();
        var path = dir.File("mem.img");
        await File.WriteAllBytesAsync(path, new byte[16 * Page], TestContext.Current.CancellationToken);
        await using var input = ImageFileInput.Open([(path, ObjectKind.Memory)], Page, "bounds");
        var obj = input.Offer.Objects[0];
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await InputBatchReader.ReadAsync(input, obj, WrappingFirst, 16, 1, BatchBufferPool.Shared, TestContext.Current.CancellationToken));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await InputBatchReader.ReadAsync(input, obj, 15, 2, 1, BatchBufferPool.Shared, TestContext.Current.CancellationToken));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await InputBatchReader.ReadAsync(input, obj, -1, 1, 1, BatchBufferPool.Shared, TestContext.Current.CancellationToken));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await input.ReadAsync(0, 16 * Page + 1, new byte[Page], TestContext.Current.CancellationToken));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await input.ReadAsync(1, 0, new byte[Page], TestContext.Current.CancellationToken));
        var batch = await InputBatchReader.ReadAsync(input, obj, 15, 1, 1, BatchBufferPool.Shared, TestContext.Current.CancellationToken);
        Assert.Equal(Page, batch.RawLength);
        batch.Raw.Dispose();
    }

    /// <summary>
    /// Two RAM blocks, every page present, the second full of a marker: a hostile read of the first
    /// must throw, never return bytes (before the fix, offset -65536 returned the marker block's pages).
    /// </summary>
    [Fact]
    public async Task A_live_input_refuses_hostile_offsets_and_never_reads_outside_its_blocks()
    {
        using var dir = new TempDir();
        await using var input = new LiveSnapshotInput(dir.File("work"), [], Page, "bounds");
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        const long blockBytes = 256L * Page;
        await input.OnRamBlocksAsync([new RamBlockInfo("pc.ram", blockBytes), new RamBlockInfo("secret", blockBytes)], guard.Token);
        for (long offset = 0; offset < blockBytes; offset += Page)
        {
            await input.OnFilledPageAsync(0, offset, 0x11, guard.Token);
            await input.OnFilledPageAsync(1, offset, 0xEE, guard.Token);
        }
        var deviceState = input.Offer.Objects.Count - 1;

        (int Object, long Offset)[] hostile =
        [
            (0, WrappedOffset),
            (0, -1),
            (0, long.MinValue),
            (0, blockBytes + 1),
            (0, long.MaxValue),
            (1, -Page),
            (deviceState, -1),
            (deviceState, long.MaxValue),
            (-1, 0),
            (deviceState + 1, 0),
        ];
        foreach (var (objectId, offset) in hostile)
        {
            var destination = new byte[64 << 10];
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await input.ReadAsync(objectId, offset, destination, guard.Token));
            Assert.DoesNotContain((byte)0xEE, destination);
        }
        foreach (var obj in input.Offer.Objects.Take(2))
        {
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await InputBatchReader.ReadAsync(input, obj, WrappingFirst, 16, 1, BatchBufferPool.Shared, guard.Token));
        }

        // In range still reads, and the last byte of the block is the last byte returned.
        var tail = new byte[Page * 2];
        Assert.Equal(Page, await input.ReadAsync(0, blockBytes - Page, tail, guard.Token));
        Assert.All(tail[..Page], b => Assert.Equal(0x11, b));
        Assert.Equal(0, await input.ReadAsync(0, blockBytes, tail, guard.Token));
    }

    [Fact]
    public async Task A_ram_block_checks_its_own_bounds_whatever_its_caller_checked()
    {
        using var dir = new TempDir();
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        guard.CancelAfter(TimeSpan.FromSeconds(30));
        const long blockBytes = 128L * Page;
        using var block = new LiveSnapshotInput.RamBlock("pc.ram", blockBytes, dir.File("ram.img"));
        for (long offset = 0; offset < blockBytes; offset += Page)
        {
            block.Fill(offset, 0x22);
        }
        foreach (var offset in new[] { WrappedOffset, -1L, long.MinValue, blockBytes + 1, long.MaxValue })
        {
            await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await block.ReadAsync(offset, new byte[64 << 10], guard.Token));
        }
        foreach (var offset in new[] { -Page, blockBytes, long.MaxValue - (Page - 1), long.MinValue })
        {
            Assert.Throws<ProtocolViolationException>(() => block.Fill(offset, 0x33));
            Assert.Throws<ProtocolViolationException>(() => block.Write(offset, new byte[Page]));
        }
    }

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public async Task Ram_block_files_are_created_readable_by_their_owner_only()
    {
        using var dir = new TempDir();
        var stale = dir.File("stale.img");
        await File.WriteAllBytesAsync(stale, [1, 2, 3], TestContext.Current.CancellationToken);
        File.SetUnixFileMode(stale, (UnixFileMode)0b110_100_100);
        using (new LiveSnapshotInput.RamBlock("pc.ram", 16 * Page, dir.File("ram.img")))
        using (new LiveSnapshotInput.RamBlock("stale", 16 * Page, stale))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dir.File("ram.img")));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(stale));
        }
    }
}
