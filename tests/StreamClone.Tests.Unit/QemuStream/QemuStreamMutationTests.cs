using CsCheck;
using StreamClone.Qemu.Migration;
using static StreamClone.Tests.Unit.QemuStream.QemuStreamVectors;

namespace StreamClone.Tests.Unit.QemuStream;

/// <summary>A small fuzz: corrupted vectors either parse or fail with <see cref="QemuStreamException"/>, nothing else.</summary>
public class QemuStreamMutationTests
{
    [Fact]
    public async Task Corrupted_streams_fail_only_with_QemuStreamException()
    {
        var original = Snapshot();
        // Up to 4 byte replacements, biased to the structured part before and between the pages.
        // Revealed in odd-sized steps (segment boundaries fall everywhere); 1-byte segments are covered by the reader
        // tests and cost O(n²) in the test's PipeReader, too slow for hundreds of samples.
        var gen = Gen.Select(Gen.OneOf(Gen.Int[0, 150], Gen.Int[0, original.Length - 1]).Array[1, 4], Gen.Byte.Array[4], Gen.Int[1, 4099]);
        await gen.SampleAsync(async (positions, values, step) =>
        {
            var data = (byte[])original.Clone();
            for (var i = 0; i < positions.Length; i++)
            {
                data[positions[i]] = values[i];
            }

            try
            {
                var reader = new DripPipeReader(data, step, oneByteSegments: false);
                await ReadAsync(reader);
            }
            catch (QemuStreamException)
            {
            }
        }, iter: 1000, print: t => $"positions [{string.Join(",", t.Item1)}] values [{string.Join(",", t.Item2)}]");
    }
}
