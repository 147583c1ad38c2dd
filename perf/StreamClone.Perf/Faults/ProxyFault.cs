using System.Buffers;

namespace StreamClone.Perf.Faults;

/// <summary>Which way bytes flow through a <see cref="FaultProxy"/> connection.</summary>
public enum ProxyDirection
{
    /// <summary>Target → client: source → sink (offer, batches, demand answers).</summary>
    Downstream,

    /// <summary>Client → target: sink → source (hello, inventory, demand requests).</summary>
    Upstream,
}

/// <summary>What a pump does once a fault stage has passed its bytes on.</summary>
public enum FaultAction
{
    Forward,

    /// <summary>Forward what passed, then close the connection with FIN both ways.</summary>
    Cut,

    /// <summary>Forward what passed, then abort the connection with RST both ways (linger 0).</summary>
    Reset,

    /// <summary>Forward what passed, then stop reading this direction for good: the sender's buffers fill and it blocks, as behind a peer that stopped reading.</summary>
    Stall,
}

/// <summary>
/// One fault on one direction of one connection, aimed at a byte offset of that direction's stream
/// (offsets count bytes read from the sender, so a fault is aimed before a byte passes and tests need
/// no sleeps). Stages keep their own position: an instance serves one stream only. Several stages on
/// one direction are chained; each later stage counts the bytes the earlier ones emitted.
/// </summary>
public abstract class ProxyFault
{
    private long _position;

    /// <summary>Stream offset of the first byte the next <see cref="Process"/> call receives.</summary>
    protected long Position => _position;

    /// <summary>Set once the fault has changed the stream (or fired its action).</summary>
    public bool Applied { get; protected set; }

    /// <summary>Short description for reports: kind and where.</summary>
    public abstract string Describe();

    /// <summary>Passes <paramref name="data"/> (the next bytes of the stream) to <paramref name="output"/>, changed as the fault says.</summary>
    internal FaultAction Process(ReadOnlySpan<byte> data, IBufferWriter<byte> output)
    {
        var action = Transform(data, output);
        _position += data.Length;
        return action;
    }

    protected abstract FaultAction Transform(ReadOnlySpan<byte> data, IBufferWriter<byte> output);

    /// <summary>The sender closed its side: emit anything held back.</summary>
    internal virtual void Complete(IBufferWriter<byte> output)
    {
    }

    /// <summary>Xor 0xFF into the byte at <paramref name="offset"/>.</summary>
    public static ProxyFault Flip(long offset) => new FlipFault(offset);

    /// <summary>Bytes [offset, offset + length) never arrive.</summary>
    public static ProxyFault Drop(long offset, int length) => new DropFault(offset, length);

    /// <summary>Bytes [offset, offset + length) arrive twice in a row.</summary>
    public static ProxyFault Duplicate(long offset, int length) => new DuplicateFault(offset, length);

    /// <summary>The segments [offset, offset + length) and [offset + length, offset + 2·length) arrive swapped.</summary>
    public static ProxyFault Reorder(long offset, int length) => new ReorderFault(offset, length);

    /// <summary>After <paramref name="offset"/> bytes passed, close the connection (FIN, or RST with <paramref name="reset"/>).</summary>
    public static ProxyFault CutAfter(long offset, bool reset) => new CutFault(offset, reset ? FaultAction.Reset : FaultAction.Cut);

    /// <summary>After <paramref name="offset"/> bytes passed, stop reading this direction.</summary>
    public static ProxyFault StallAfter(long offset) => new CutFault(offset, FaultAction.Stall);

    /// <summary>Longest range a fault may hold back or repeat: it is buffered in memory.</summary>
    public const int MaxRangeLength = 1 << 20;

    protected static void Write(IBufferWriter<byte> output, ReadOnlySpan<byte> bytes)
    {
        if (!bytes.IsEmpty)
        {
            bytes.CopyTo(output.GetSpan(bytes.Length));
            output.Advance(bytes.Length);
        }
    }

    protected static void CheckRange(long offset, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, MaxRangeLength);
    }

    /// <summary>The part of [Position, Position + length) that falls in [start, end), relative to Position.</summary>
    protected (int From, int To) Overlap(int length, long start, long end)
    {
        var from = Math.Clamp(start - Position, 0, length);
        var to = Math.Clamp(end - Position, 0, length);
        return ((int)from, (int)Math.Max(from, to));
    }

    private sealed class FlipFault(long offset) : ProxyFault
    {
        public override string Describe() => $"flip byte {offset}";

        protected override FaultAction Transform(ReadOnlySpan<byte> data, IBufferWriter<byte> output)
        {
            var span = output.GetSpan(Math.Max(1, data.Length));
            data.CopyTo(span);
            if (offset >= Position && offset < Position + data.Length)
            {
                span[(int)(offset - Position)] ^= 0xFF;
                Applied = true;
            }
            output.Advance(data.Length);
            return FaultAction.Forward;
        }
    }

    private sealed class DropFault : ProxyFault
    {
        private readonly long _offset;
        private readonly int _length;

        public DropFault(long offset, int length)
        {
            CheckRange(offset, length);
            (_offset, _length) = (offset, length);
        }

        public override string Describe() => $"drop {_length} bytes at {_offset}";

        protected override FaultAction Transform(ReadOnlySpan<byte> data, IBufferWriter<byte> output)
        {
            var (from, to) = Overlap(data.Length, _offset, _offset + _length);
            Applied |= to > from;
            Write(output, data[..from]);
            Write(output, data[to..]);
            return FaultAction.Forward;
        }
    }

    private sealed class DuplicateFault : ProxyFault
    {
        private readonly long _offset;
        private readonly byte[] _copy;

        public DuplicateFault(long offset, int length)
        {
            CheckRange(offset, length);
            _offset = offset;
            _copy = new byte[length];
        }

        public override string Describe() => $"duplicate {_copy.Length} bytes at {_offset}";

        protected override FaultAction Transform(ReadOnlySpan<byte> data, IBufferWriter<byte> output)
        {
            var end = _offset + _copy.Length;
            var (from, to) = Overlap(data.Length, _offset, end);
            if (to > from)
            {
                data[from..to].CopyTo(_copy.AsSpan((int)(Position + from - _offset)));
            }
            if (end > Position && end <= Position + data.Length)
            {
                // The range's last byte is in this read: the repeat follows it directly.
                var split = (int)(end - Position);
                Write(output, data[..split]);
                Write(output, _copy);
                Write(output, data[split..]);
                Applied = true;
            }
            else
            {
                Write(output, data);
            }
            return FaultAction.Forward;
        }
    }

    private sealed class ReorderFault : ProxyFault
    {
        private readonly long _offset;
        private readonly byte[] _held;
        private bool _released;

        public ReorderFault(long offset, int length)
        {
            CheckRange(offset, length);
            _offset = offset;
            _held = new byte[length];
        }

        public override string Describe() => $"swap two {_held.Length}-byte segments at {_offset}";

        protected override FaultAction Transform(ReadOnlySpan<byte> data, IBufferWriter<byte> output)
        {
            var length = _held.Length;
            var release = _offset + (2L * length);
            // Bytes before the first segment pass; the first segment is held; the second passes; the held
            // bytes follow the second segment's last byte; the rest passes.
            var (holdFrom, holdTo) = Overlap(data.Length, _offset, _offset + length);
            if (holdTo > holdFrom)
            {
                data[holdFrom..holdTo].CopyTo(_held.AsSpan((int)(Position + holdFrom - _offset)));
            }
            Write(output, data[..holdFrom]);
            var (secondFrom, secondTo) = Overlap(data.Length, _offset + length, release);
            Write(output, data[secondFrom..secondTo]);
            if (!_released && release <= Position + data.Length)
            {
                Write(output, _held);
                _released = true;
                Applied = true;
            }
            Write(output, data[Math.Max(secondTo, holdTo)..]);
            return FaultAction.Forward;
        }

        internal override void Complete(IBufferWriter<byte> output)
        {
            if (!_released && Position > _offset)
            {
                // The stream ended inside the window: the held bytes come last.
                Write(output, _held.AsSpan(0, (int)Math.Min(_held.Length, Position - _offset)));
                _released = true;
                Applied = true;
            }
        }
    }

    private sealed class CutFault(long offset, FaultAction action) : ProxyFault
    {
        public override string Describe() => $"{action.ToString().ToLowerInvariant()} after {offset} bytes";

        protected override FaultAction Transform(ReadOnlySpan<byte> data, IBufferWriter<byte> output)
        {
            if (Applied)
            {
                // Later chained data after the action fired is never forwarded.
                return action;
            }
            if (Position + data.Length < offset)
            {
                Write(output, data);
                return FaultAction.Forward;
            }
            Write(output, data[..(int)(offset - Position)]);
            Applied = true;
            return action;
        }
    }
}
