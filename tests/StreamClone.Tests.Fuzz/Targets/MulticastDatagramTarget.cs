using StreamClone.Shared;
using StreamClone.Shared.Multicast;
using StreamClone.Shared.Protocol;

namespace StreamClone.Tests.Fuzz.Targets;

/// <summary>
/// A multicast receiver's datagram path (<see cref="MulticastDatagram.TryOpen"/> and <see cref="MulticastReassembly"/>).
/// Each input goes in twice: (1) as received bytes, where nearly every mutation must end as malformed, foreign, replayed
/// or forged and never throw; (2) re-sealed with the group key when its header is well-formed, as a key holder gone bad
/// would send it, so reassembly meets authentic but hostile placements (lengths that disagree, far sequences, repeats).
/// Invariants: nothing throws, the next in-order sequence never goes back, and a delivered batch has the length its
/// datagrams declared.
/// </summary>
internal sealed class MulticastDatagramTarget : FuzzTarget, IDisposable
{
    private static readonly byte[] KeyBytes = [.. Enumerable.Range(0, WireLimits.MulticastKeyBytes).Select(i => (byte)(i * 13))];
    private readonly MulticastKey _key = new(21, 2, KeyBytes, 0x01020304);
    private readonly byte[] _sealed = new byte[WireLimits.MaxMulticastDatagramBytes];
    private MulticastReassembly _receiver = NewReceiver();
    private ulong _counter = 1UL << 40;
    private long _now;

    public MulticastDatagramTarget()
        : base("multicast-datagram")
    {
    }

    public override int MaxInputLength => 2048;

    public override IReadOnlyList<byte[]> Dictionary { get; } =
        [[0x53, 0x43], [0x01], [0x02], [0x03], [0, 0, 0, 21], [0, 0, 0, 2], [0xff, 0xff], [0, 0], [0, 0x40, 0x00, 0x00], [0, 0, 0x05, 0x80]];

    private static MulticastReassembly NewReceiver() => new(
        new MulticastJoinMessage
        {
            GroupAddress = "239.9.9.9",
            Port = 9,
            SenderId = 21,
            KeyId = 2,
            Key = KeyBytes,
            NonceSalt = 0x01020304,
            FirstSequence = 1,
            GrttMicroseconds = 1000,
            MinRateBytesPerSecond = 1,
            MaxRateBytesPerSecond = 1,
        },
        new MulticastReceiverOptions { InterfaceName = "fuzz", WindowBytes = 8 << 20, MaxBatchesAhead = 64 },
        new Random(1));

    public override IEnumerable<byte[]> Seeds()
    {
        ulong counter = 0;
        foreach (var (sequence, length) in new[] { (1L, 100), (2L, 3000), (3L, 1408), (40L, 9000) })
        {
            for (var index = 0; index < MulticastDatagram.FragmentCount(length); index++)
            {
                var offset = index * MulticastDatagram.MaxFragmentPayload;
                var header = new DatagramHeader(DatagramKind.Data, 21, 2, sequence, index, MulticastDatagram.FragmentCount(length),
                    length, offset, counter++, 5);
                var datagram = new byte[WireLimits.MaxMulticastDatagramBytes];
                var fragment = new byte[header.FragmentLength];
                Array.Fill(fragment, (byte)sequence);
                yield return datagram[..MulticastDatagram.Write(datagram, header, fragment, _key)];
            }
        }
        var heartbeat = new byte[WireLimits.MaxMulticastDatagramBytes];
        yield return heartbeat[..MulticastDatagram.Write(heartbeat, new DatagramHeader(DatagramKind.Heartbeat, 21, 2, 4, 0, 0, 0, 0, counter, 9), [], _key)];
    }

    public override void Run(ReadOnlySpan<byte> input)
    {
        if (_now % 4096 == 0)
        {
            // Start fresh now and then, so the window does not stay full of one run's leftovers.
            _receiver.Dispose();
            _receiver = NewReceiver();
        }
        _now += 1000;
        var completed = new List<ReassembledBatch>();
        var before = _receiver.NextSequence;
        _receiver.Accept(input, _now, completed);
        if (MulticastDatagram.TryReadHeader(input, out var header) && header.SenderId == 21 && header.KeyId == 2)
        {
            var resealed = header with { Counter = _counter++ };
            var fragment = input.Slice(MulticastDatagram.HeaderBytes, header.FragmentLength);
            var length = MulticastDatagram.Write(_sealed, resealed, fragment, _key);
            _receiver.Accept(_sealed.AsSpan(0, length), _now, completed);
        }
        _receiver.Tick(_now);
        if (_receiver.NextSequence < before)
        {
            throw new FuzzInvariantException($"next sequence went back from {before} to {_receiver.NextSequence}");
        }
        foreach (var batch in completed)
        {
            if (batch.Length is < 1 or > WireLimits.MaxMulticastBatchBytes)
            {
                throw new FuzzInvariantException($"delivered a batch of {batch.Length} bytes");
            }
            batch.Dispose();
        }
    }

    public void Dispose()
    {
        _receiver.Dispose();
        _key.Dispose();
    }
}
