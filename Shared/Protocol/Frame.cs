using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using MessagePack;

namespace StreamClone.Shared.Protocol;

/// <summary>
/// Frame layout (all integers little-endian):
/// <code>
///  0      2   magic 0x53 0x43 ("SC"): catches a desynchronised or foreign stream at once
///  2      1   FrameType
///  3      1   flags (0; reserved)
///  4      4   header length H (MessagePack), ≤ TransportOptions.MaxHeaderBytes
///  8      4   payload length P (raw bytes), ≤ TransportOptions.MaxPayloadBytes
/// 12      4   sequence number: 0, 1, 2 … per connection and direction (drops, replays, reorders)
/// 16      4   CRC-32 (IEEE) of bytes [0,16), the header and the payload
/// 20      H   header
/// 20+H    P   payload
/// </code>
/// The CRC catches corruption on a link; the per-chunk BLAKE3 hashes inside batches are what make
/// data trustworthy end to end (a relay or cache can recompute a CRC, not a content hash).
/// </summary>
public readonly struct Frame
{
    public const int PrefixSize = 20;
    public const ushort Magic = 0x4353; // "SC" little-endian

    public Frame(FrameType type, uint sequence, ReadOnlySequence<byte> header, ReadOnlySequence<byte> payload)
    {
        Type = type;
        Sequence = sequence;
        Header = header;
        Payload = payload;
    }

    public FrameType Type { get; }
    public uint Sequence { get; }
    /// <summary>Valid only until the reader advances past the frame.</summary>
    public ReadOnlySequence<byte> Header { get; }
    /// <summary>Valid only until the reader advances past the frame: copy or decode it first.</summary>
    public ReadOnlySequence<byte> Payload { get; }

    public T DecodeHeader<T>()
    {
        T header;
        try
        {
            header = MessagePackSerializer.Deserialize<T>(Header, MessagePackDefaults.Options);
        }
        catch (MessagePackSerializationException ex)
        {
            return ThrowHelper.ThrowProtocol<T>(ProtocolError.MalformedHeader,
                $"{Type} frame #{Sequence}: header is not a valid {typeof(T).Name} ({ex.InnerException?.Message ?? ex.Message})");
        }
        // A nil header decodes to null for every message class: malformed, like any other wrong shape.
        if (header is null)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.MalformedHeader, $"{Type} frame #{Sequence}: header is nil, not a {typeof(T).Name}");
        }
        return header;
    }
}

/// <summary>Parses frames from a receive buffer. Returns false for "not yet"; throws for "never".</summary>
public sealed class FrameReader
{
    private readonly TransportOptions _options;
    private uint _expectedSequence;

    public FrameReader(TransportOptions options) => _options = options;

    public uint FramesRead => _expectedSequence;

    /// <summary>
    /// Takes one whole frame from the front of <paramref name="buffer"/> (which is then sliced past
    /// it). The frame's slices point into the caller's buffer and die with its AdvanceTo.
    /// </summary>
    public bool TryRead(ref ReadOnlySequence<byte> buffer, out Frame frame)
    {
        frame = default;
        if (buffer.Length < Frame.PrefixSize)
        {
            return false;
        }

        Span<byte> prefix = stackalloc byte[Frame.PrefixSize];
        buffer.Slice(0, Frame.PrefixSize).CopyTo(prefix);

        var magic = BinaryPrimitives.ReadUInt16LittleEndian(prefix);
        if (magic != Frame.Magic)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.BadMagic,
                $"expected frame magic 0x{Frame.Magic:x4} at frame #{_expectedSequence}, got 0x{magic:x4} (not a StreamClone peer, or the stream is out of step)");
        }
        var type = (FrameType)prefix[2];
        var headerLength = BinaryPrimitives.ReadUInt32LittleEndian(prefix[4..]);
        var payloadLength = BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]);
        // Lengths are checked before they size or slice anything.
        if (headerLength > (uint)_options.MaxHeaderBytes)
        {
            ThrowHelper.ThrowFrameTooLarge($"{type} header", headerLength, _options.MaxHeaderBytes);
        }
        if (payloadLength > (uint)_options.MaxPayloadBytes)
        {
            ThrowHelper.ThrowFrameTooLarge($"{type} payload", payloadLength, _options.MaxPayloadBytes);
        }

        var total = Frame.PrefixSize + (long)headerLength + payloadLength;
        if (buffer.Length < total)
        {
            return false;
        }

        var sequence = BinaryPrimitives.ReadUInt32LittleEndian(prefix[12..]);
        var expectedCrc = BinaryPrimitives.ReadUInt32LittleEndian(prefix[16..]);
        var header = buffer.Slice(Frame.PrefixSize, headerLength);
        var payload = buffer.Slice(Frame.PrefixSize + headerLength, payloadLength);

        var crc = new Crc32();
        crc.Append(prefix[..16]);
        foreach (var segment in buffer.Slice(Frame.PrefixSize, headerLength + payloadLength))
        {
            crc.Append(segment.Span);
        }
        var actualCrc = crc.GetCurrentHashAsUInt32();
        if (actualCrc != expectedCrc)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.ChecksumMismatch,
                $"{type} frame #{sequence}: CRC-32 0x{actualCrc:x8} does not match 0x{expectedCrc:x8} ({headerLength}+{payloadLength} bytes)");
        }
        if (sequence != _expectedSequence)
        {
            ThrowHelper.ThrowProtocol(ProtocolError.OutOfSequence,
                $"{type} frame has sequence {sequence}, expected {_expectedSequence} (dropped, replayed or reordered frame)");
        }
        if (!Enum.IsDefined(type))
        {
            ThrowHelper.ThrowProtocol(ProtocolError.UnexpectedFrame, $"unknown frame type {(byte)type} in frame #{sequence}");
        }

        _expectedSequence++;
        frame = new Frame(type, sequence, header, payload);
        buffer = buffer.Slice(total);
        return true;
    }
}

/// <summary>
/// Writes frames into an <see cref="IBufferWriter{T}"/> (a PipeWriter in practice). Not thread-safe:
/// one writer per connection direction.
/// <para>
/// The MessagePack header is serialised straight into the output, after room left for the prefix,
/// and the prefix (lengths, sequence, CRC) is filled in once header and payload are in place: no
/// intermediate header buffer, one GetMemory and one Advance per frame (nats.net's ProtocolWriter
/// shape). The room asked for the header is the largest header this writer has written; a larger
/// one is serialised aside once and copied (<see cref="HeaderWriter"/>), and raises the room.
/// </para>
/// </summary>
public sealed class FrameWriter
{
    /// <summary>First guess at a header's size: Hello, offers of a few objects, small batches fit.</summary>
    private const int InitialHeaderRoom = 256;

    /// <summary>
    /// Most header room ever asked for: a batch header is ~33 bytes per chunk (kind + hash), so 16 KiB
    /// covers batches of up to ~490 chunks (the default 64 take ~2.1 KiB). A rare larger header (an
    /// offer of many objects) is copied instead of making every later frame ask for its size.
    /// </summary>
    private const int MaxHeaderRoom = 16 << 10;

    private readonly HeaderWriter _header = new();
    private readonly Crc32 _crc = new();
    private int _headerRoom = InitialHeaderRoom;
    private uint _sequence;

    public uint FramesWritten => _sequence;

    public int Write<THeader>(IBufferWriter<byte> output, FrameType type, THeader header, ReadOnlySpan<byte> payload)
    {
        var memory = output.GetMemory(Frame.PrefixSize + _headerRoom + payload.Length);
        _header.Start(memory.Slice(Frame.PrefixSize, _headerRoom));
        MessagePackSerializer.Serialize(_header, header, MessagePackDefaults.Options);
        var headerLength = _header.Written;
        var total = Frame.PrefixSize + headerLength + payload.Length;
        Span<byte> span;
        if (_header.Overflow is { } aside)
        {
            // Bigger than any header before: ask again for enough room, and copy it in this once.
            _headerRoom = Math.Min(headerLength, MaxHeaderRoom);
            span = output.GetSpan(total);
            aside.WrittenSpan.CopyTo(span[Frame.PrefixSize..]);
        }
        else
        {
            // GetMemory gave at least prefix + room + payload, and the header took at most the room.
            span = memory.Span;
        }

        BinaryPrimitives.WriteUInt16LittleEndian(span, Frame.Magic);
        span[2] = (byte)type;
        span[3] = 0;
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], (uint)headerLength);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], (uint)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span[12..], _sequence++);
        payload.CopyTo(span[(Frame.PrefixSize + headerLength)..]);

        _crc.Reset();
        _crc.Append(span[..16]);
        _crc.Append(span.Slice(Frame.PrefixSize, headerLength + payload.Length));
        BinaryPrimitives.WriteUInt32LittleEndian(span[16..], _crc.GetCurrentHashAsUInt32());
        output.Advance(total);
        return total;
    }

    /// <summary>
    /// The IBufferWriter MessagePack serialises a header into: a window of the output's memory, or,
    /// once the header outgrows it, a buffer aside holding what was written so far and the rest.
    /// MessagePack commits (Advance) what it wrote before it asks for more, so the switch loses nothing.
    /// </summary>
    private sealed class HeaderWriter : IBufferWriter<byte>
    {
        private readonly ArrayBufferWriter<byte> _aside = new(InitialHeaderRoom * 4);
        private Memory<byte> _window;
        private int _inWindow;
        private bool _overflowed;

        /// <summary>Set once the header outgrew the window: it is all here.</summary>
        public ArrayBufferWriter<byte>? Overflow => _overflowed ? _aside : null;

        public int Written => _overflowed ? _aside.WrittenCount : _inWindow;

        public void Start(Memory<byte> window)
        {
            _window = window;
            _inWindow = 0;
            _overflowed = false;
        }

        public void Advance(int count)
        {
            if (_overflowed)
            {
                _aside.Advance(count);
            }
            else
            {
                ArgumentOutOfRangeException.ThrowIfGreaterThan(count, _window.Length - _inWindow);
                _inWindow += count;
            }
        }

        public Memory<byte> GetMemory(int sizeHint = 0)
        {
            if (!_overflowed && _window.Length - _inWindow >= Math.Max(sizeHint, 1))
            {
                return _window[_inWindow..];
            }
            if (!_overflowed)
            {
                _overflowed = true;
                _aside.ResetWrittenCount();
                _aside.Write(_window.Span[.._inWindow]);
            }
            return _aside.GetMemory(sizeHint);
        }

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;
    }
}
