using StreamClone.Perf;

namespace StreamClone.Tests.Unit.Perf;

public sealed class SizeParserTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("64K", 64L << 10)]
    [InlineData("64k", 64L << 10)]
    [InlineData("512M", 512L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData("4GiB", 4L << 30)]
    [InlineData("2GB", 2L << 30)]
    [InlineData("1.5G", 3L << 29)]
    [InlineData(" 1T ", 1L << 40)]
    [InlineData("0", 0L)]
    public void Parses_binary_suffixes(string text, long expected) => Assert.Equal(expected, SizeParser.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("-1G")]
    [InlineData("1X")]
    [InlineData("0.1K")]
    [InlineData("9999999999T")]
    [InlineData("1 000")]
    public void Rejects_what_is_not_a_size(string text)
    {
        Assert.False(SizeParser.TryParse(text, out _));
        Assert.Throws<FormatException>(() => SizeParser.Parse(text));
    }

    [Theory]
    [InlineData(1L << 30, "1G")]
    [InlineData(6L << 10, "6K")]
    [InlineData(1000L, "1000")]
    [InlineData(0L, "0")]
    public void Formats_the_shortest_exact_form(long bytes, string expected) => Assert.Equal(expected, SizeParser.Format(bytes));
}
