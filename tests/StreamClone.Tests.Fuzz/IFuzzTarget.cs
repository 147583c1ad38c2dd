namespace StreamClone.Tests.Fuzz;

/// <summary>
/// One decoder of outside bytes. <see cref="Run"/> feeds it one input: returning, or throwing one of the
/// exceptions the decoder documents for bad input (<see cref="IsExpected"/>), is a pass; any other exception,
/// a hang or a dead process is a crash.
/// </summary>
public interface IFuzzTarget
{
    string Name { get; }

    /// <summary>Inputs longer than this are cut before they run (keeps one exec cheap).</summary>
    int MaxInputLength { get; }

    /// <summary>Real encodings, made by the project's own writers: where mutation starts.</summary>
    IEnumerable<byte[]> Seeds();

    /// <summary>Tokens worth inserting whole (magic bytes, tags, keywords).</summary>
    IReadOnlyList<byte[]> Dictionary { get; }

    void Run(ReadOnlySpan<byte> input);

    bool IsExpected(Exception error);
}

/// <summary>A target's answer that breaks a property the decoder promises (it read outside a block, accepted a range it must refuse).</summary>
public sealed class FuzzInvariantException(string message) : Exception(message);

/// <summary>Common parts: the expected exception types, an empty dictionary.</summary>
public abstract class FuzzTarget : IFuzzTarget
{
    private readonly Type[] _expected;

    protected FuzzTarget(string name, params Type[] expected)
    {
        Name = name;
        _expected = expected;
    }

    public string Name { get; }

    public virtual int MaxInputLength => 64 << 10;

    public virtual IReadOnlyList<byte[]> Dictionary => MessagePackTokens.All;

    public abstract IEnumerable<byte[]> Seeds();

    public abstract void Run(ReadOnlySpan<byte> input);

    public bool IsExpected(Exception error) =>
        error is not FuzzInvariantException && _expected.Any(t => t.IsInstanceOfType(error));
}

/// <summary>MessagePack format bytes and the integers that break length and index arithmetic.</summary>
public static class MessagePackTokens
{
    /// <summary>nil, false/true, bin8/16/32, uint64, int64, int32, str8/16/32, array16/32, map16/32, fixarray/fixmap/fixstr heads, ext.</summary>
    public static readonly byte[][] All =
    [
        [0xc0], [0xc2], [0xc3], [0xc4, 0xff], [0xc5, 0xff, 0xff], [0xc6, 0x7f, 0xff, 0xff, 0xff],
        [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], [0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0x00],
        [0xd2, 0x7f, 0xff, 0xff, 0xff], [0xd2, 0x80, 0, 0, 0], [0xd2, 0xff, 0xff, 0xff, 0xff], [0xce, 0xff, 0xff, 0xff, 0xff],
        [0xd9, 0xff], [0xda, 0xff, 0xff], [0xdb, 0x7f, 0xff, 0xff, 0xff], [0xdc, 0xff, 0xff], [0xdd, 0x7f, 0xff, 0xff, 0xff],
        [0xde, 0xff, 0xff], [0xdf, 0x7f, 0xff, 0xff, 0xff], [0x9f], [0x8f], [0xbf], [0xd6, 0xff], [0xd7, 0xff], [0xff], [0x7f],
    ];
}
