using System.Buffers;
using StreamClone.Perf.Faults;

namespace StreamClone.Tests.Unit.Perf;

/// <summary>The fault proxy's byte faults produce exactly the changed stream they describe, however the stream is split into reads.</summary>
public class ProxyFaultTests
{
    private static readonly byte[] Stream = [.. Enumerable.Range(0, 5000).Select(i => (byte)(i * 7))];

    public static TheoryData<int> ReadSizes => [1, 3, 64, 999, 4096, 5000];

    private static (byte[] Output, FaultAction Action) Run(ProxyFault fault, int readSize, bool complete = true)
    {
        var output = new ArrayBufferWriter<byte>();
        for (var at = 0; at < Stream.Length; at += readSize)
        {
            var action = fault.Process(Stream.AsSpan(at, Math.Min(readSize, Stream.Length - at)), output);
            if (action != FaultAction.Forward)
            {
                return (output.WrittenSpan.ToArray(), action);
            }
        }
        if (complete)
        {
            fault.Complete(output);
        }
        return (output.WrittenSpan.ToArray(), FaultAction.Forward);
    }

    [Theory]
    [MemberData(nameof(ReadSizes))]
    public void Flip_changes_exactly_one_byte(int readSize)
    {
        var (output, _) = Run(ProxyFault.Flip(1234), readSize);
        var expected = (byte[])Stream.Clone();
        expected[1234] ^= 0xFF;
        Assert.Equal(expected, output);
    }

    [Theory]
    [MemberData(nameof(ReadSizes))]
    public void Drop_removes_the_range(int readSize)
    {
        var fault = ProxyFault.Drop(1000, 777);
        var (output, _) = Run(fault, readSize);
        Assert.Equal([.. Stream[..1000], .. Stream[1777..]], output);
        Assert.True(fault.Applied);
    }

    [Theory]
    [MemberData(nameof(ReadSizes))]
    public void Duplicate_repeats_the_range_right_after_it(int readSize)
    {
        var (output, _) = Run(ProxyFault.Duplicate(1000, 777), readSize);
        Assert.Equal([.. Stream[..1777], .. Stream[1000..1777], .. Stream[1777..]], output);
    }

    [Theory]
    [MemberData(nameof(ReadSizes))]
    public void Reorder_swaps_two_adjacent_segments(int readSize)
    {
        var (output, _) = Run(ProxyFault.Reorder(1000, 777), readSize);
        Assert.Equal([.. Stream[..1000], .. Stream[1777..2554], .. Stream[1000..1777], .. Stream[2554..]], output);
    }

    [Fact]
    public void Reorder_cut_short_by_the_end_of_the_stream_still_delivers_the_held_bytes()
    {
        var (output, _) = Run(ProxyFault.Reorder(4500, 400), 64);
        Assert.Equal([.. Stream[..4500], .. Stream[4900..], .. Stream[4500..4900]], output);
    }

    [Theory]
    [MemberData(nameof(ReadSizes))]
    public void Cut_reset_and_stall_fire_after_exactly_their_offset(int readSize)
    {
        foreach (var (fault, action) in new[] { (ProxyFault.CutAfter(2345, reset: false), FaultAction.Cut), (ProxyFault.CutAfter(2345, reset: true), FaultAction.Reset), (ProxyFault.StallAfter(2345), FaultAction.Stall) })
        {
            var (output, fired) = Run(fault, readSize);
            Assert.Equal(action, fired);
            Assert.Equal(Stream[..2345], output);
        }
    }

    [Fact]
    public void Chained_faults_each_count_the_stream_they_are_given()
    {
        var drop = ProxyFault.Drop(0, 100);
        var flip = ProxyFault.Flip(0);
        var output = new ArrayBufferWriter<byte>();
        var middle = new ArrayBufferWriter<byte>();
        drop.Process(Stream.AsSpan(0, 200), middle);
        flip.Process(middle.WrittenSpan, output);
        var expected = Stream[100..200];
        expected[0] ^= 0xFF;
        Assert.Equal(expected, output.WrittenSpan.ToArray());
    }
}
