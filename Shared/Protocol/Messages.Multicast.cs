using System.Net;
using System.Net.Sockets;
using MessagePack;

namespace StreamClone.Shared.Protocol;

/// <summary>
/// Relay → receiver on its control connection (<see cref="FrameType.MulticastJoin"/>): where the multicast stream is and
/// how to open it. Batches from <see cref="FirstSequence"/> on come by multicast; earlier ones came (or come) over TCP.
/// <see cref="Problem"/> checks every field against its bound; a receiver refuses a join that fails it.
/// </summary>
[MessagePackObject]
public sealed class MulticastJoinMessage : IMessagePackSerializationCallbackReceiver
{
    /// <summary>IPv4 multicast group (224.0.0.0/4) as text.</summary>
    [Key(0)] public string GroupAddress { get; set; } = "";
    [Key(1)] public int Port { get; set; }
    /// <summary>The relay's id in every datagram: a receiver drops datagrams of other senders as foreign.</summary>
    [Key(2)] public uint SenderId { get; set; }
    /// <summary>Which key: a new snapshot (or a rekey) has another id, so old datagrams are foreign, not forged.</summary>
    [Key(3)] public uint KeyId { get; set; }
    /// <summary>AES-256-GCM key, <see cref="WireLimits.MulticastKeyBytes"/> bytes, fresh per snapshot.</summary>
    [Key(4)] public byte[] Key { get; set; } = [];
    /// <summary>The first 4 bytes of every nonce under this key (the other 8 are the datagram counter).</summary>
    [Key(5)] public uint NonceSalt { get; set; }
    /// <summary>First batch sequence (1-based) this receiver takes from multicast.</summary>
    [Key(6)] public long FirstSequence { get; set; }
    /// <summary>The sender's group round-trip time estimate, microseconds: the receiver's NACK backoff scale until datagrams update it.</summary>
    [Key(7)] public long GrttMicroseconds { get; set; }
    /// <summary>Operator bounds of the send rate, bytes per second (a receiver sizes its buffers from the maximum).</summary>
    [Key(8)] public long MinRateBytesPerSecond { get; set; }
    [Key(9)] public long MaxRateBytesPerSecond { get; set; }

    /// <summary>Null when every field is in range; otherwise what is wrong, as one line.</summary>
    public string? Problem()
    {
        if (GroupAddress.Length > WireLimits.MaxMulticastGroupLength
            || !IPAddress.TryParse(GroupAddress, out var group)
            || group.AddressFamily != AddressFamily.InterNetwork
            || (group.GetAddressBytes()[0] & 0xF0) != 0xE0)
        {
            return $"multicast join: group '{Shorten(GroupAddress)}' is not an IPv4 multicast address";
        }
        if (Port is < 1 or > 65535)
        {
            return $"multicast join: port {Port} out of range";
        }
        if (Key.Length != WireLimits.MulticastKeyBytes)
        {
            return $"multicast join: key is {Key.Length} bytes, expected {WireLimits.MulticastKeyBytes}";
        }
        if (FirstSequence < 1)
        {
            return $"multicast join: first sequence {FirstSequence} is not 1-based";
        }
        if (GrttMicroseconds < Multicast.GrttEstimator.MinMicroseconds || GrttMicroseconds > Multicast.GrttEstimator.MaxMicroseconds)
        {
            return $"multicast join: GRTT {GrttMicroseconds} µs outside [{Multicast.GrttEstimator.MinMicroseconds}, {Multicast.GrttEstimator.MaxMicroseconds}]";
        }
        if (MinRateBytesPerSecond < 1 || MaxRateBytesPerSecond < MinRateBytesPerSecond)
        {
            return $"multicast join: rate bounds [{MinRateBytesPerSecond}, {MaxRateBytesPerSecond}] are not a range";
        }
        return null;
    }

    internal static string Shorten(string text) => text.Length <= 64 ? text : text[..64] + "…";

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(GroupAddress, nameof(MulticastJoinMessage), nameof(GroupAddress));
        NilMembers.Reject(Key, nameof(MulticastJoinMessage), nameof(Key));
    }
}

/// <summary>
/// One batch's missing fragments. An empty <see cref="Missing"/> means the whole batch (the receiver heard none of it,
/// so it does not know the fragment count); otherwise bit i (LSB first) set = fragment i missing.
/// </summary>
[MessagePackObject]
public sealed class MulticastNack : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public long Sequence { get; set; }
    [Key(1)] public byte[] Missing { get; set; } = [];

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Missing, nameof(MulticastNack), nameof(Missing));
    }
}

/// <summary>
/// Receiver → relay on its control connection (<see cref="FrameType.MulticastReport"/>): feedback for rate control and
/// the group round-trip time, and NACKs. Sent periodically and when a NACK backoff ends.
/// </summary>
[MessagePackObject]
public sealed class MulticastReportMessage : IMessagePackSerializationCallbackReceiver
{
    /// <summary>The next batch the receiver needs in order (all before it were delivered).</summary>
    [Key(0)] public long NextSequence { get; set; }
    /// <summary>Highest batch sequence heard of (data or heartbeat).</summary>
    [Key(1)] public long HighestSequence { get; set; }
    /// <summary>Datagram payload bytes received since the receiver joined.</summary>
    [Key(2)] public long BytesReceived { get; set; }
    /// <summary>TFMCC loss event rate in [0, 1]; 0 until the first loss (the sender is then in slow start for this receiver).</summary>
    [Key(3)] public double LossEventRate { get; set; }
    /// <summary>Send timestamp (µs, sender's clock) of the latest datagram heard; 0 when none yet.</summary>
    [Key(4)] public long TimestampEcho { get; set; }
    /// <summary>Microseconds between hearing that datagram and sending this report (subtracted from the round trip).</summary>
    [Key(5)] public long HoldMicroseconds { get; set; }
    /// <summary>Receive rate, bytes per second, over the last report interval (TFMCC slow start limits to twice it).</summary>
    [Key(6)] public long ReceiveRateBytesPerSecond { get; set; }
    /// <summary>At most <see cref="WireLimits.MaxMulticastNacks"/>, oldest first, sequences distinct.</summary>
    [Key(7)] public List<MulticastNack> Nacks { get; set; } = [];

    /// <summary>Null when every field is in range; otherwise what is wrong, as one line.</summary>
    public string? Problem()
    {
        if (NextSequence < 1 || HighestSequence < 0 || BytesReceived < 0 || TimestampEcho < 0 || HoldMicroseconds < 0
            || ReceiveRateBytesPerSecond < 0)
        {
            return "multicast report: negative or zero position, counter or time";
        }
        if (!(LossEventRate >= 0 && LossEventRate <= 1))
        {
            return $"multicast report: loss event rate {LossEventRate} outside [0, 1]";
        }
        if (Nacks.Count > WireLimits.MaxMulticastNacks)
        {
            return $"multicast report: {Nacks.Count} NACKs, at most {WireLimits.MaxMulticastNacks}";
        }
        foreach (var nack in Nacks)
        {
            if (nack.Sequence < 1 || nack.Missing.Length > WireLimits.MaxMulticastNackBitmapBytes)
            {
                return $"multicast report: NACK of batch {nack.Sequence} with a {nack.Missing.Length}-byte bitmap";
            }
        }
        return null;
    }

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.RejectItems(Nacks, nameof(MulticastReportMessage), nameof(Nacks));
    }
}

/// <summary>Why multicast ended for a receiver.</summary>
public enum MulticastLeaveReason : byte
{
    /// <summary>It fell too far behind the send head; the rest comes over TCP.</summary>
    Lagging = 1,
    /// <summary>The relay stopped multicasting (shutdown, or the stream moved on).</summary>
    SenderStopped = 2,
    /// <summary>The receiver asked to leave (it cannot keep up, or its socket failed).</summary>
    ReceiverLeft = 3,
}

/// <summary>
/// Either direction on the control connection (<see cref="FrameType.MulticastLeave"/>): multicast ends for this receiver;
/// batches from <see cref="ResumeFromSequence"/> on come over the TCP bulk lane.
/// </summary>
[MessagePackObject]
public sealed class MulticastLeaveMessage : IMessagePackSerializationCallbackReceiver
{
    [Key(0)] public long ResumeFromSequence { get; set; }
    [Key(1)] public MulticastLeaveReason Reason { get; set; }
    /// <summary>For the log, at most <see cref="WireLimits.MaxMulticastLeaveReasonLength"/> characters.</summary>
    [Key(2)] public string Detail { get; set; } = "";

    /// <summary>Null when every field is in range; otherwise what is wrong, as one line.</summary>
    public string? Problem() =>
        ResumeFromSequence < 1 ? $"multicast leave: resume sequence {ResumeFromSequence} is not 1-based"
        : !Enum.IsDefined(Reason) ? $"multicast leave: unknown reason {(byte)Reason}"
        : Detail.Length > WireLimits.MaxMulticastLeaveReasonLength ? $"multicast leave: detail of {Detail.Length} characters"
        : null;

    void IMessagePackSerializationCallbackReceiver.OnBeforeSerialize()
    {
    }

    void IMessagePackSerializationCallbackReceiver.OnAfterDeserialize()
    {
        NilMembers.Reject(Detail, nameof(MulticastLeaveMessage), nameof(Detail));
    }
}
