using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Multicast;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Unit.Multicast;

public class MulticastMessageTests
{
    private static MulticastJoinMessage Join() => new()
    {
        GroupAddress = "239.1.2.3",
        Port = 5000,
        SenderId = 1,
        KeyId = 2,
        Key = new byte[WireLimits.MulticastKeyBytes],
        NonceSalt = 3,
        FirstSequence = 1,
        GrttMicroseconds = 10_000,
        MinRateBytesPerSecond = 1,
        MaxRateBytesPerSecond = 2,
    };

    private static T RoundTrip<T>(T message) =>
        MessagePackSerializer.Deserialize<T>(MessagePackSerializer.Serialize(message, MessagePackDefaults.Options), MessagePackDefaults.Options);

    [Fact]
    public void Messages_round_trip_and_a_valid_join_has_no_problem()
    {
        var join = RoundTrip(Join());
        Assert.Null(join.Problem());
        Assert.Equal("239.1.2.3", join.GroupAddress);

        var report = RoundTrip(new MulticastReportMessage
        {
            NextSequence = 4,
            HighestSequence = 9,
            LossEventRate = 0.01,
            Nacks = [new MulticastNack { Sequence = 4, Missing = [0b101] }, new MulticastNack { Sequence = 6 }],
        });
        Assert.Null(report.Problem());
        Assert.Equal([0b101], report.Nacks[0].Missing);
        Assert.Empty(report.Nacks[1].Missing);

        var leave = RoundTrip(new MulticastLeaveMessage { ResumeFromSequence = 7, Reason = MulticastLeaveReason.Lagging, Detail = "behind" });
        Assert.Null(leave.Problem());
    }

    public static TheoryData<string> BadJoins => ["group", "port", "key", "first", "grtt", "rates", "unicast"];

    [Theory]
    [MemberData(nameof(BadJoins))]
    public void A_join_out_of_range_is_refused(string field)
    {
        var join = Join();
        switch (field)
        {
            case "group": join.GroupAddress = "not an address"; break;
            case "unicast": join.GroupAddress = "10.0.0.1"; break;
            case "port": join.Port = 70000; break;
            case "key": join.Key = new byte[16]; break;
            case "first": join.FirstSequence = 0; break;
            case "grtt": join.GrttMicroseconds = 0; break;
            case "rates": join.MaxRateBytesPerSecond = 0; break;
        }
        Assert.StartsWith("multicast join:", join.Problem());
    }

    [Fact]
    public void A_report_with_too_many_nacks_or_a_long_bitmap_or_a_bad_rate_is_refused()
    {
        var tooMany = new MulticastReportMessage
        {
            NextSequence = 1,
            Nacks = [.. Enumerable.Range(1, WireLimits.MaxMulticastNacks + 1).Select(i => new MulticastNack { Sequence = i })],
        };
        Assert.NotNull(tooMany.Problem());
        var longBitmap = new MulticastReportMessage
        {
            NextSequence = 1,
            Nacks = [new MulticastNack { Sequence = 1, Missing = new byte[WireLimits.MaxMulticastNackBitmapBytes + 1] }],
        };
        Assert.NotNull(longBitmap.Problem());
        Assert.NotNull(new MulticastReportMessage { NextSequence = 1, LossEventRate = double.NaN }.Problem());
        Assert.NotNull(new MulticastReportMessage { NextSequence = 0 }.Problem());
    }

    [Fact]
    public void A_nil_nack_bitmap_or_key_is_malformed()
    {
        var report = MessagePackSerializer.Serialize(new MulticastReportMessage { NextSequence = 1, Nacks = [new MulticastNack { Sequence = 2 }] },
            MessagePackDefaults.Options);
        // The last byte is the empty bitmap (bin8 of length 0 is c4 00): make it nil.
        byte[] nilBitmap = [.. report[..^2], 0xc0];
        Assert.Throws<MessagePackSerializationException>(() =>
            MessagePackSerializer.Deserialize<MulticastReportMessage>(nilBitmap, MessagePackDefaults.Options));
    }

    [Fact]
    public void The_bitmap_covers_the_largest_batch()
    {
        Assert.True(WireLimits.MaxMulticastFragments * MulticastDatagram.MaxFragmentPayload >= WireLimits.MaxMulticastBatchBytes);
        Assert.True(WireLimits.MaxMulticastFragments <= ushort.MaxValue);
        Assert.Equal((WireLimits.MaxMulticastFragments + 7) / 8, WireLimits.MaxMulticastNackBitmapBytes);
    }
}
