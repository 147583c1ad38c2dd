using StreamClone.Shared;
using StreamClone.Shared.Multicast;

namespace StreamClone.Tests.Unit.Multicast;

public sealed class MulticastDatagramTests : IDisposable
{
    private static readonly byte[] KeyBytes = [.. Enumerable.Range(1, 32).Select(i => (byte)i)];
    private readonly MulticastKey _key = new(7, 3, KeyBytes, 0xA1B2C3D4);

    public void Dispose() => _key.Dispose();

    private byte[] Seal(long sequence, int index, int batchLength, ulong counter, DatagramKind kind = DatagramKind.Data, MulticastKey? key = null)
    {
        key ??= _key;
        var offset = index * MulticastDatagram.MaxFragmentPayload;
        var header = new DatagramHeader(kind, key.SenderId, key.KeyId, sequence, index, MulticastDatagram.FragmentCount(batchLength),
            batchLength, offset, counter, 12345);
        var fragment = new byte[header.FragmentLength];
        for (var i = 0; i < fragment.Length; i++)
        {
            fragment[i] = (byte)(offset + i);
        }
        var datagram = new byte[WireLimits.MaxMulticastDatagramBytes];
        return datagram[..MulticastDatagram.Write(datagram, header, fragment, key)];
    }

    private DatagramParseResult Open(byte[] datagram, ReplayWindow? replay = null) =>
        MulticastDatagram.TryOpen(datagram, _key, replay ?? new ReplayWindow(), new byte[MulticastDatagram.MaxFragmentPayload], out _);

    [Fact]
    public void The_datagram_limit_is_the_ethernet_mtu_less_ip_and_udp_headers()
    {
        Assert.Equal(1472, WireLimits.MaxMulticastDatagramBytes);
        Assert.Equal(1408, MulticastDatagram.MaxFragmentPayload);
    }

    [Fact]
    public void A_full_fragment_fills_the_datagram_and_opens_to_its_bytes()
    {
        var datagram = Seal(sequence: 5, index: 1, batchLength: 3000, counter: 9);
        Assert.Equal(WireLimits.MaxMulticastDatagramBytes, datagram.Length);

        var fragment = new byte[MulticastDatagram.MaxFragmentPayload];
        Assert.Equal(DatagramParseResult.Ok, MulticastDatagram.TryOpen(datagram, _key, new ReplayWindow(), fragment, out var header));
        Assert.Equal((5L, 1, 3, 3000, 1408, 9UL, 12345L), (header.Sequence, header.FragmentIndex, header.FragmentCount, header.BatchLength,
            header.FragmentOffset, header.Counter, header.SendTimestamp));
        Assert.Equal(Enumerable.Range(1408, 1408).Select(i => (byte)i).ToArray(), fragment[..header.FragmentLength]);
    }

    [Fact]
    public void Changing_any_byte_never_opens_and_changing_a_sealed_byte_is_forged()
    {
        var datagram = Seal(sequence: 300, index: 2, batchLength: 3000, counter: 1000);
        for (var i = 0; i < datagram.Length; i++)
        {
            var tampered = (byte[])datagram.Clone();
            tampered[i] ^= 0x40;
            var result = Open(tampered);
            Assert.NotEqual(DatagramParseResult.Ok, result);
            // Sequence high bytes, counter, timestamp, payload and tag: still well-formed, so only the tag catches it.
            if (i is (>= 12 and < 18) or >= 32)
            {
                Assert.Equal(DatagramParseResult.Forged, result);
            }
        }
    }

    [Fact]
    public void A_datagram_heard_twice_is_replayed_and_one_older_than_the_window_too()
    {
        var replay = new ReplayWindow();
        var first = Seal(1, 0, 100, counter: 5000);
        Assert.Equal(DatagramParseResult.Ok, Open(first, replay));
        Assert.Equal(DatagramParseResult.Replayed, Open(first, replay));

        Assert.Equal(DatagramParseResult.Ok, Open(Seal(1, 0, 100, counter: 4990), replay));
        Assert.Equal(DatagramParseResult.Replayed, Open(Seal(1, 0, 100, counter: 4990), replay));
        Assert.Equal(DatagramParseResult.Replayed, Open(Seal(1, 0, 100, counter: 5000 - ReplayWindow.Size), replay));
        Assert.Equal(DatagramParseResult.Ok, Open(Seal(1, 0, 100, counter: 5000 + (3 * ReplayWindow.Size)), replay));
        Assert.Equal(DatagramParseResult.Ok, Open(Seal(1, 0, 100, counter: 5001 + (2 * ReplayWindow.Size)), replay));
    }

    [Fact]
    public void A_forged_datagram_does_not_move_the_replay_window()
    {
        var replay = new ReplayWindow();
        var forged = Seal(1, 0, 100, counter: 1_000_000);
        forged[^1] ^= 1;
        Assert.Equal(DatagramParseResult.Forged, Open(forged, replay));
        Assert.Equal(DatagramParseResult.Ok, Open(Seal(1, 0, 100, counter: 1), replay));
    }

    [Fact]
    public void Another_sender_or_key_is_foreign()
    {
        using var otherSender = new MulticastKey(8, 3, KeyBytes, 0xA1B2C3D4);
        using var otherKey = new MulticastKey(7, 4, KeyBytes, 0xA1B2C3D4);
        Assert.Equal(DatagramParseResult.Foreign, Open(Seal(1, 0, 100, 1, key: otherSender)));
        Assert.Equal(DatagramParseResult.Foreign, Open(Seal(1, 0, 100, 1, key: otherKey)));
    }

    [Fact]
    public void Another_key_under_the_same_ids_is_forged()
    {
        using var stolenIds = new MulticastKey(7, 3, new byte[32], 0xA1B2C3D4);
        Assert.Equal(DatagramParseResult.Forged, Open(Seal(1, 0, 100, 1, key: stolenIds)));
    }

    [Fact]
    public void Truncated_oversized_and_inconsistent_datagrams_are_malformed()
    {
        var datagram = Seal(1, 0, 3000, 1);
        for (var length = 0; length < datagram.Length; length += 7)
        {
            Assert.Equal(DatagramParseResult.Malformed, Open(datagram[..length]));
        }
        Assert.Equal(DatagramParseResult.Malformed, Open([.. datagram, 0]));
        Assert.Equal(DatagramParseResult.Malformed, Open(new byte[4000]));

        static byte[] With(byte[] d, int at, params byte[] value)
        {
            var copy = (byte[])d.Clone();
            value.CopyTo(copy, at);
            return copy;
        }
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 0, 0, 0)));               // magic
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 2, 9)));                  // version
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 3, 0)));                  // kind
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 12, 0, 0, 0, 0, 0, 0, 0, 0))); // sequence 0
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 20, 0, 3)));              // index ≥ count
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 22, 0, 9)));              // count ≠ length's
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 24, 0xff, 0xff, 0xff, 0xff))); // length > cap
        Assert.Equal(DatagramParseResult.Malformed, Open(With(datagram, 28, 0, 0, 0, 1)));        // offset ≠ index × size
    }

    [Fact]
    public void A_heartbeat_carries_no_payload_and_opens()
    {
        var header = new DatagramHeader(DatagramKind.Heartbeat, 7, 3, 42, 0, 0, 0, 0, 77, 5);
        var datagram = new byte[WireLimits.MaxMulticastDatagramBytes];
        var length = MulticastDatagram.Write(datagram, header, [], _key);
        Assert.Equal(MulticastDatagram.HeaderBytes + MulticastDatagram.TagBytes, length);
        Assert.Equal(DatagramParseResult.Ok, MulticastDatagram.TryOpen(datagram.AsSpan(0, length), _key, new ReplayWindow(),
            new byte[MulticastDatagram.MaxFragmentPayload], out var opened));
        Assert.Equal(header, opened);
    }
}
