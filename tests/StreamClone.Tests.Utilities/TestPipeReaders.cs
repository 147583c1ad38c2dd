using System.Buffers;
using System.IO.Pipelines;

namespace StreamClone.Tests.Utilities;

/// <summary>
/// A PipeReader over fixed bytes that reveals <c>step</c> more bytes whenever the consumer examined everything it
/// was shown, each byte in its own segment when <c>oneByteSegments</c> (SE.Redis FragmentedSegment style), and
/// reports completion only after the consumer examined all of <c>visibleLimit</c> bytes. With a limit below the
/// length, it models a transport that ends early.
/// </summary>
public sealed class DripPipeReader : PipeReader
{
    private readonly ReadOnlySequence<byte> _all;
    private readonly long _limit;
    private readonly int _step;
    private long _consumed;
    private long _visible;
    private long _examined;

    public DripPipeReader(byte[] data, int step, bool oneByteSegments, long? visibleLimit = null)
    {
        _all = oneByteSegments ? Segments.OneBytePerSegment(data) : new ReadOnlySequence<byte>(data);
        _limit = visibleLimit ?? data.Length;
        _step = step;
    }

    /// <summary>How many ReadAsync calls returned data without completion (the consumer asked for more).</summary>
    public int NotYetReads { get; private set; }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (_examined >= _visible)
        {
            if (_visible == _limit)
            {
                // Everything shown was examined and nothing more will come: the transport ended.
                return new(new ReadResult(_all.Slice(_consumed, _visible - _consumed), false, true));
            }

            _visible = Math.Min(_limit, _visible + _step);
        }

        NotYetReads++;
        return new(new ReadResult(_all.Slice(_consumed, _visible - _consumed), false, false));
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        _consumed = _all.GetOffset(consumed);
        _examined = Math.Max(_examined, _all.GetOffset(examined));
    }

    public override bool TryRead(out ReadResult result) => throw new NotSupportedException();

    public override void CancelPendingRead() => throw new NotSupportedException();

    public override void Complete(Exception? exception = null)
    {
    }
}
