using StreamClone.Shared;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using static StreamClone.Tests.Unit.Store.Chunks;

namespace StreamClone.Tests.Unit.Store;

/// <summary>What a store takes from an offer: the one offer rule, the node's limits, memory as chunks arrive, and who learns which hashes.</summary>
public sealed class OfferPolicyTests : IDisposable
{
    private readonly TempStore _temp = new();

    public void Dispose() => _temp.Dispose();

    private void AssertNothingStored()
    {
        Assert.Empty(Directory.GetFileSystemEntries(_temp.Store.SnapshotsDirectory));
        Assert.Empty(_temp.Store.ListSnapshots());
    }

    [Fact]
    public void An_offer_over_the_limit_or_the_free_space_is_refused_before_anything_is_written()
    {
        _temp.Options.MaxSnapshotBytes = 1L << 30;
        var over = Assert.Throws<ProtocolViolationException>(() => _temp.Store.OpenSnapshot(Offer("big", (0, 10_000_000_000_000, Page))));
        Assert.Equal(ProtocolError.OfferRefused, over.Code);
        AssertNothingStored();

        // Under the limit, but 600 MiB free less a 100 MiB margin is short of 512 MiB.
        _temp.Options.FreeSpaceProbe = _ => 600L << 20;
        _temp.Options.FreeSpaceMarginBytes = 100L << 20;
        var full = Assert.Throws<ProtocolViolationException>(() => _temp.Store.OpenSnapshot(Offer("fits-limit", (0, 512L << 20, Page))));
        Assert.Equal(ProtocolError.OfferRefused, full.Code);
        Assert.Contains("free", full.Message, StringComparison.Ordinal);
        AssertNothingStored();

        // What fits is taken, and survives a reopen; the refused ones never appear.
        var small = _temp.Store.OpenSnapshot(Offer("small", (0, 400L << 20, Page)));
        Put(small, 0, 0, 1);
        _temp.Reopen();
        Assert.Equal(["small"], _temp.Store.ListSnapshots().Select(s => s.SnapshotId));
    }

    [Fact]
    public void Sizes_whose_arithmetic_would_wrap_are_malformed()
    {
        Assert.Equal(ProtocolError.MalformedHeader,
            Assert.Throws<ProtocolViolationException>(() => _temp.Store.OpenSnapshot(Offer("max", (0, long.MaxValue, Page)))).Code);
        // Each object at its largest (2^32 chunks of 4 MiB), 4096 of them: the sum passes long.MaxValue.
        var largest = WireLimits.MaxChunksPerObject * WireLimits.MaxChunkSize;
        var many = Offer("many", [.. Enumerable.Range(0, WireLimits.MaxObjects).Select(i => (i, largest, WireLimits.MaxChunkSize))]);
        var ex = Assert.Throws<ProtocolViolationException>(() => OfferRules.Validate(many));
        Assert.Contains("add up", ex.Message, StringComparison.Ordinal);
        Assert.Throws<ProtocolViolationException>(() => OfferRules.Validate(Offer("none")));
        AssertNothingStored();
    }

    [Fact]
    public void A_device_state_object_past_its_limit_is_malformed()
    {
        var offer = Offer("vm", (0, WireLimits.MaxDeviceStateBytes + Page, Page));
        offer.Objects[0].Kind = ObjectKind.DeviceState;
        Assert.Equal(ProtocolError.MalformedHeader, Assert.Throws<ProtocolViolationException>(() => _temp.Store.OpenSnapshot(offer)).Code);
        offer.Objects[0].Size = WireLimits.MaxDeviceStateBytes;
        Assert.NotNull(_temp.Store.OpenSnapshot(offer));
    }

    [Fact]
    public void A_1_TiB_offer_costs_memory_only_as_its_chunks_arrive()
    {
        _temp.Options.MaxSnapshotBytes = long.MaxValue;
        _temp.Options.FreeSpaceProbe = _ => long.MaxValue;
        const long size = 1L << 40;

        var before = GC.GetAllocatedBytesForCurrentThread();
        var snapshot = _temp.Store.OpenSnapshot(Offer("tib", (0, size, Page)));
        var opened = GC.GetAllocatedBytesForCurrentThread() - before;

        // 2^28 chunks: sized up front that was ~100 MB of presence bits and a ~14 GB index.
        Assert.True(opened < 64L << 20, $"opening a 1 TiB offer allocated {opened} bytes");
        Assert.Equal(size / Page, snapshot.TotalChunks);
        // The far end of the object works as any other place.
        var last = (size / Page) - 1;
        Put(snapshot, 0, last, 7);
        Assert.True(snapshot.IsPresent(0, last));
        Assert.False(snapshot.IsPresent(0, last - 1));
        Assert.False(snapshot.IsRangePresent(0, 0, 1L << 20));
        Assert.Equal(Data(7, Page), ReadChunk(snapshot, 0, last));
    }

    [Fact]
    public async Task Each_upstream_learns_and_may_copy_only_what_came_from_it()
    {
        var fromA = _temp.Store.OpenSnapshot(Offer("a", (0, 2 * Page, Page)), upstream: "10.0.0.1");
        var fromB = _temp.Store.OpenSnapshot(Offer("b", (0, 2 * Page, Page)), upstream: "10.0.0.2");
        var a = Put(fromA, 0, 0, 1);
        var b = Put(fromB, 0, 0, 2);

        Assert.Equal([a], _temp.Store.GetInventory("10.0.0.1"));
        Assert.Equal([b], _temp.Store.GetInventory("10.0.0.2"));
        Assert.Empty(_temp.Store.GetInventory("10.0.0.3"));

        // Naming another upstream's hash as Known gets no copy: the sink asks for the bytes, as for a hash it lacks.
        Assert.False(fromB.TryPutKnown(0, 1, a));
        Assert.False(fromB.IsPresent(0, 1));
        Assert.True(fromA.TryPutKnown(0, 1, a));

        // The upstream is recorded with the snapshot.
        await _temp.Store.FlushAllAsync(TestContext.Current.CancellationToken);
        var store = _temp.Reopen();
        Assert.Equal([a], store.GetInventory("10.0.0.1"));
        Assert.Equal("10.0.0.2", store.GetSnapshot("b")!.Upstream);
    }
}
