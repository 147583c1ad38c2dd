using System.Buffers;

namespace StreamClone.Tests.Utilities;

/// <summary>Builds multi-segment sequences, so parsers meet every split they will meet from a socket.</summary>
public static class Segments
{
    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    public static ReadOnlySequence<byte> OneBytePerSegment(byte[] data) => Split(data, 1);

    /// <summary>Splits <paramref name="data"/> into segments of <paramref name="size"/> bytes, as a socket would deliver it.</summary>
    public static ReadOnlySequence<byte> Split(ReadOnlyMemory<byte> data, int size)
    {
        if (data.Length <= size)
        {
            return new ReadOnlySequence<byte>(data);
        }
        var first = new Segment(data[..size], 0);
        var last = first;
        for (var at = size; at < data.Length; at += size)
        {
            last = last.Append(data[at..Math.Min(data.Length, at + size)]);
        }
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}
