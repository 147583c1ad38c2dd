using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace StreamClone.Shared.Multicast;

/// <summary>What a datagram carries.</summary>
public enum DatagramKind : byte
{
    /// <summary>A fragment of a batch, first transmission.</summary>
    Data = 1,
    /// <summary>A fragment sent again because receivers NACKed it.</summary>
    Repair = 2,
    /// <summary>No payload: the send head (sequence of the last batch sent) and a timestamp, sent while idle, so a
    /// receiver that lost the tail notices it and the group round-trip time keeps being measured.</summary>
    Heartbeat = 3,
}

/// <summary>How a received datagram was judged.</summary>
public enum DatagramParseResult
{
    Ok,
    /// <summary>Too short or too long, bad magic or version, or a field out of range.</summary>
    Malformed,
    /// <summary>AES-GCM authentication failed.</summary>
    Forged,
    /// <summary>Another sender id or key id.</summary>
    Foreign,
    /// <summary>Its counter was seen before, or is older than the replay window.</summary>
    Replayed,
}

/// <summary>The cleartext header of a datagram; authenticated as AES-GCM associated data.</summary>
public readonly record struct DatagramHeader(
    DatagramKind Kind,
    uint SenderId,
    uint KeyId,
    long Sequence,
    int FragmentIndex,
    int FragmentCount,
    int BatchLength,
    int FragmentOffset,
    ulong Counter,
    long SendTimestamp)
{
    /// <summary>Payload bytes this fragment carries (derived, so a header cannot disagree with itself).</summary>
    public int FragmentLength => Kind == DatagramKind.Heartbeat ? 0 : Math.Min(MulticastDatagram.MaxFragmentPayload, BatchLength - FragmentOffset);
}

/// <summary>
/// The datagram layout, big-endian: magic "SC" (2), version (1), kind (1), sender id (4), key id (4), batch sequence (8),
/// fragment index (2), fragment count (2), batch length (4), fragment offset (4), datagram counter (8), send timestamp µs
/// (8) = 48 header bytes (the AAD), then the encrypted fragment, then the 16-byte GCM tag. The nonce is the key's 4-byte
/// salt followed by the 8-byte counter: the sender never repeats a counter under one key (it is a 64-bit count of
/// datagrams sent), so a nonce is never reused. Every datagram places itself (batch, fragment, sizes), so a receiver
/// that joins late or loses any datagram needs no earlier state to use the next one.
/// </summary>
public static class MulticastDatagram
{
    public const ushort Magic = 0x5343;
    public const byte Version = 1;
    public const int HeaderBytes = 48;
    public const int TagBytes = 16;
    public const int NonceBytes = 12;

    /// <summary>Fragment payload: the largest datagram less header and tag. Every fragment but a batch's last is this long.</summary>
    public const int MaxFragmentPayload = WireLimits.MaxMulticastDatagramBytes - HeaderBytes - TagBytes;

    /// <summary>Fragments a batch of <paramref name="batchLength"/> bytes is cut into.</summary>
    public static int FragmentCount(int batchLength) => (batchLength + MaxFragmentPayload - 1) / MaxFragmentPayload;

    /// <summary>Writes header, sealed payload and tag into <paramref name="destination"/>; returns the bytes written.</summary>
    public static int Write(Span<byte> destination, in DatagramHeader header, ReadOnlySpan<byte> fragment, MulticastKey key)
    {
        var length = HeaderBytes + fragment.Length + TagBytes;
        if (fragment.Length != header.FragmentLength || destination.Length < length)
        {
            throw new ArgumentException("fragment length disagrees with its header, or the destination is too short");
        }
        WriteHeader(destination, header);
        Span<byte> nonce = stackalloc byte[NonceBytes];
        key.Nonce(header.Counter, nonce);
        key.Aes.Encrypt(nonce, fragment, destination.Slice(HeaderBytes, fragment.Length),
            destination.Slice(HeaderBytes + fragment.Length, TagBytes), destination[..HeaderBytes]);
        return length;
    }

    /// <summary><see cref="Write(Span{byte}, in DatagramHeader, ReadOnlySpan{byte}, MulticastKey)"/> into a buffer writer.</summary>
    public static int Write(IBufferWriter<byte> writer, in DatagramHeader header, ReadOnlySpan<byte> fragment, MulticastKey key)
    {
        var written = Write(writer.GetSpan(WireLimits.MaxMulticastDatagramBytes), header, fragment, key);
        writer.Advance(written);
        return written;
    }

    private static void WriteHeader(Span<byte> d, in DatagramHeader h)
    {
        BinaryPrimitives.WriteUInt16BigEndian(d, Magic);
        d[2] = Version;
        d[3] = (byte)h.Kind;
        BinaryPrimitives.WriteUInt32BigEndian(d[4..], h.SenderId);
        BinaryPrimitives.WriteUInt32BigEndian(d[8..], h.KeyId);
        BinaryPrimitives.WriteInt64BigEndian(d[12..], h.Sequence);
        BinaryPrimitives.WriteUInt16BigEndian(d[20..], checked((ushort)h.FragmentIndex));
        BinaryPrimitives.WriteUInt16BigEndian(d[22..], checked((ushort)h.FragmentCount));
        BinaryPrimitives.WriteUInt32BigEndian(d[24..], checked((uint)h.BatchLength));
        BinaryPrimitives.WriteUInt32BigEndian(d[28..], checked((uint)h.FragmentOffset));
        BinaryPrimitives.WriteUInt64BigEndian(d[32..], h.Counter);
        BinaryPrimitives.WriteInt64BigEndian(d[40..], h.SendTimestamp);
    }

    /// <summary>
    /// Reads only the header and checks its ranges: no decryption. Malformed unless every field is consistent: known kind,
    /// sequence ≥ 1, batch length in [1, <see cref="WireLimits.MaxMulticastBatchBytes"/>], fragment count = the count that
    /// length needs, index &lt; count, offset = index × <see cref="MaxFragmentPayload"/>, datagram length = header +
    /// fragment + tag (a heartbeat: all zero and no payload).
    /// </summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> datagram, out DatagramHeader header)
    {
        header = default;
        if (datagram.Length < HeaderBytes + TagBytes || datagram.Length > WireLimits.MaxMulticastDatagramBytes
            || BinaryPrimitives.ReadUInt16BigEndian(datagram) != Magic || datagram[2] != Version)
        {
            return false;
        }
        var kind = (DatagramKind)datagram[3];
        var sequence = BinaryPrimitives.ReadInt64BigEndian(datagram[12..]);
        int index = BinaryPrimitives.ReadUInt16BigEndian(datagram[20..]);
        int count = BinaryPrimitives.ReadUInt16BigEndian(datagram[22..]);
        var batchLength = BinaryPrimitives.ReadUInt32BigEndian(datagram[24..]);
        var offset = BinaryPrimitives.ReadUInt32BigEndian(datagram[28..]);
        if (sequence < 1)
        {
            return false;
        }
        switch (kind)
        {
            case DatagramKind.Heartbeat:
                if (index != 0 || count != 0 || batchLength != 0 || offset != 0 || datagram.Length != HeaderBytes + TagBytes)
                {
                    return false;
                }
                break;
            case DatagramKind.Data or DatagramKind.Repair:
                if (batchLength is < 1 or > WireLimits.MaxMulticastBatchBytes
                    || count != FragmentCount((int)batchLength)
                    || index >= count
                    || offset != (long)index * MaxFragmentPayload)
                {
                    return false;
                }
                var fragmentLength = Math.Min(MaxFragmentPayload, (int)batchLength - (int)offset);
                if (datagram.Length != HeaderBytes + fragmentLength + TagBytes)
                {
                    return false;
                }
                break;
            default:
                return false;
        }
        header = new DatagramHeader(kind, BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]),
            BinaryPrimitives.ReadUInt32BigEndian(datagram[8..]), sequence, index, count, (int)batchLength, (int)offset,
            BinaryPrimitives.ReadUInt64BigEndian(datagram[32..]), BinaryPrimitives.ReadInt64BigEndian(datagram[40..]));
        return true;
    }

    /// <summary>
    /// Judges one received datagram and, when Ok, decrypts its fragment into <paramref name="fragment"/> (at least
    /// <see cref="MaxFragmentPayload"/> bytes) and records its counter in <paramref name="replay"/>. Never throws on any
    /// input: checks run cheapest first (structure, then sender and key, then the replay window, then the tag), and the
    /// replay window moves only for authentic datagrams, so a forged one cannot push real ones out of it.
    /// </summary>
    public static DatagramParseResult TryOpen(
        ReadOnlySpan<byte> datagram, MulticastKey key, ReplayWindow replay, Span<byte> fragment, out DatagramHeader header)
    {
        if (!TryReadHeader(datagram, out header))
        {
            return DatagramParseResult.Malformed;
        }
        if (header.SenderId != key.SenderId || header.KeyId != key.KeyId)
        {
            return DatagramParseResult.Foreign;
        }
        if (!replay.IsFresh(header.Counter))
        {
            return DatagramParseResult.Replayed;
        }
        var length = header.FragmentLength;
        if (fragment.Length < length)
        {
            throw new ArgumentException("fragment buffer shorter than MaxFragmentPayload", nameof(fragment));
        }
        Span<byte> nonce = stackalloc byte[NonceBytes];
        key.Nonce(header.Counter, nonce);
        try
        {
            key.Aes.Decrypt(nonce, datagram.Slice(HeaderBytes, length), datagram.Slice(HeaderBytes + length, TagBytes),
                fragment[..length], datagram[..HeaderBytes]);
        }
        catch (CryptographicException)
        {
            return DatagramParseResult.Forged;
        }
        replay.Mark(header.Counter);
        return DatagramParseResult.Ok;
    }
}

/// <summary>
/// One sender's key: AES-256-GCM with a 16-byte tag, the nonce salt, and the ids datagrams must carry. Dispose when the
/// snapshot ends (clears the key schedule).
/// </summary>
public sealed class MulticastKey : IDisposable
{
    public MulticastKey(uint senderId, uint keyId, ReadOnlySpan<byte> key, uint nonceSalt)
    {
        if (key.Length != WireLimits.MulticastKeyBytes)
        {
            throw new ArgumentException($"multicast key must be {WireLimits.MulticastKeyBytes} bytes", nameof(key));
        }
        SenderId = senderId;
        KeyId = keyId;
        NonceSalt = nonceSalt;
        Aes = new AesGcm(key, MulticastDatagram.TagBytes);
    }

    public uint SenderId { get; }
    public uint KeyId { get; }
    public uint NonceSalt { get; }
    internal AesGcm Aes { get; }

    /// <summary>A fresh random key and salt for a new snapshot (or rekey).</summary>
    public static (byte[] Key, uint Salt) Generate()
    {
        var key = RandomNumberGenerator.GetBytes(WireLimits.MulticastKeyBytes);
        Span<byte> salt = stackalloc byte[4];
        RandomNumberGenerator.Fill(salt);
        return (key, BinaryPrimitives.ReadUInt32BigEndian(salt));
    }

    internal void Nonce(ulong counter, Span<byte> nonce)
    {
        BinaryPrimitives.WriteUInt32BigEndian(nonce, NonceSalt);
        BinaryPrimitives.WriteUInt64BigEndian(nonce[4..], counter);
    }

    public void Dispose() => Aes.Dispose();
}

/// <summary>
/// Counters seen from one sender: the highest and a bitmap of the <see cref="Size"/> below it (RFC 4303 §3.4.3 style).
/// Reordering on one segment is a few datagrams; 1024 leaves room for a receiver that stalls while the socket queues.
/// </summary>
public sealed class ReplayWindow
{
    public const int Size = 1024;
    private readonly ulong[] _bits = new ulong[Size / 64];
    private ulong _highest;
    private bool _any;

    /// <summary>True when <paramref name="counter"/> was not seen and is not older than the window.</summary>
    public bool IsFresh(ulong counter)
    {
        if (!_any || counter > _highest)
        {
            return true;
        }
        var behind = _highest - counter;
        return behind < Size && (_bits[(int)(counter % Size) / 64] & (1UL << (int)(counter % 64))) == 0;
    }

    /// <summary>Records an authentic counter (call only after <see cref="IsFresh"/>).</summary>
    public void Mark(ulong counter)
    {
        if (!_any || counter > _highest)
        {
            var advance = _any ? counter - _highest : Size;
            if (advance >= Size)
            {
                Array.Clear(_bits);
            }
            else
            {
                for (var c = _highest + 1; c < counter; c++)
                {
                    _bits[(int)(c % Size) / 64] &= ~(1UL << (int)(c % 64));
                }
            }
            _highest = counter;
            _any = true;
        }
        _bits[(int)(counter % Size) / 64] |= 1UL << (int)(counter % 64);
    }
}
