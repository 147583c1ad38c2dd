using System.Buffers.Binary;

namespace StreamClone.Tests.Fuzz;

/// <summary>
/// AFL-style havoc without coverage: 1 to 6 stacked edits of a corpus entry — bit flips, random and
/// interesting bytes, length-field values (0, 1, -1, 2^31-1, 2^63-1, page and chunk boundaries) in
/// both byte orders, block inserts, deletes, duplicates, splices with another entry, dictionary tokens.
/// </summary>
public sealed class Mutator(Random random, IReadOnlyList<byte[]> dictionary, int maxLength)
{
    private static readonly long[] Interesting =
    [
        0, 1, 2, -1, -2, 7, 8, 16, 31, 32, 33, 48, 63, 64, 127, 128, 255, 256, 1023, 1024, 4095, 4096, 4097, 8192,
        65535, 65536, (1 << 20) - 1, 1 << 20, 4 << 20, (4 << 20) + 1, 8 << 20, (8 << 20) + 1, 16 << 20,
        int.MaxValue, int.MinValue, uint.MaxValue, (long)uint.MaxValue + 1,
        long.MaxValue, long.MinValue, long.MaxValue / 4096, (long.MaxValue / 4096) + 1, long.MaxValue - 4095, long.MaxValue / 8192,
        1L << 40, (1L << 62) + 1, 1L << 32,
    ];

    public byte[] Mutate(IReadOnlyList<byte[]> corpus)
    {
        var data = new List<byte>(corpus[random.Next(corpus.Count)]);
        var edits = 1 << random.Next(3);
        for (var i = 0; i < edits; i++)
        {
            Edit(data, corpus);
        }
        if (data.Count > maxLength)
        {
            data.RemoveRange(maxLength, data.Count - maxLength);
        }
        return [.. data];
    }

    private void Edit(List<byte> data, IReadOnlyList<byte[]> corpus)
    {
        var at = data.Count == 0 ? 0 : random.Next(data.Count);
        switch (random.Next(12))
        {
            case 0 when data.Count > 0:
                data[at] ^= (byte)(1 << random.Next(8));
                break;
            case 1 when data.Count > 0:
                data[at] = (byte)random.Next(256);
                break;
            case 2 or 3:
                WriteInteger(data, at);
                break;
            case 4 when data.Count > 0:
                data[at] = (byte)(data[at] + random.Next(-16, 17));
                break;
            case 5:
                data.InsertRange(at, RandomBytes(1 + random.Next(random.Next(2) == 0 ? 8 : 512)));
                break;
            case 6 when data.Count > 1:
                var remove = 1 + random.Next(Math.Min(data.Count - at, random.Next(2) == 0 ? 16 : 4096));
                data.RemoveRange(at, Math.Min(remove, data.Count - at));
                break;
            case 7 when data.Count > 1:
                var from = random.Next(data.Count);
                var length = 1 + random.Next(Math.Min(data.Count - from, 256));
                data.InsertRange(at, data.GetRange(from, length));
                break;
            case 8:
                var other = corpus[random.Next(corpus.Count)];
                if (other.Length > 0)
                {
                    var start = random.Next(other.Length);
                    var take = 1 + random.Next(other.Length - start);
                    if (random.Next(2) == 0 && data.Count > at)
                    {
                        data.RemoveRange(at, data.Count - at);
                    }
                    data.InsertRange(at, other.AsSpan(start, take).ToArray());
                }
                break;
            case 9 or 10 when dictionary.Count > 0:
                var token = dictionary[random.Next(dictionary.Count)];
                if (random.Next(2) == 0 || data.Count < at + token.Length)
                {
                    data.InsertRange(at, token);
                }
                else
                {
                    for (var i = 0; i < token.Length; i++)
                    {
                        data[at + i] = token[i];
                    }
                }
                break;
            case 11 when data.Count > 0:
                data.RemoveRange(at, data.Count - at);
                break;
            default:
                data.InsertRange(at, RandomBytes(1));
                break;
        }
    }

    private void WriteInteger(List<byte> data, int at)
    {
        var value = Interesting[random.Next(Interesting.Length)] + (random.Next(4) == 0 ? random.Next(-2, 3) : 0);
        var width = (1 << random.Next(4)) switch { 1 => 1, 2 => 2, 4 => 4, _ => 8 };
        Span<byte> bytes = stackalloc byte[8];
        if (random.Next(2) == 0)
        {
            BinaryPrimitives.WriteInt64LittleEndian(bytes, value);
            bytes = bytes[..width];
        }
        else
        {
            BinaryPrimitives.WriteInt64BigEndian(bytes, value);
            bytes = bytes[(8 - width)..];
        }
        for (var i = 0; i < width; i++)
        {
            if (at + i < data.Count)
            {
                data[at + i] = bytes[i];
            }
            else
            {
                data.Add(bytes[i]);
            }
        }
    }

    private byte[] RandomBytes(int count)
    {
        var bytes = new byte[count];
        if (random.Next(2) == 0)
        {
            random.NextBytes(bytes);
        }
        else
        {
            Array.Fill(bytes, (byte)(random.Next(2) == 0 ? 0 : random.Next(256)));
        }
        return bytes;
    }
}
