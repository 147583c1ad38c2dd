using StreamClone.Qemu;

namespace StreamClone.Tests.Unit.Qemu;

public class SequencedBufferTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_reader_sees_items_after_its_mark_including_those_that_arrived_before_it_started()
    {
        var buffer = new SequencedBuffer<string>(capacity: 10);
        buffer.Add(_ => "old");
        var mark = buffer.LastSequence;
        buffer.Add(_ => "early");

        var seen = new List<string>();
        var reader = Task.Run(async () =>
        {
            await foreach (var item in buffer.ReadAsync(mark, Ct))
                seen.Add(item);
        }, Ct);
        buffer.Add(_ => "late");
        buffer.Complete();
        await reader.WaitAsync(TimeSpan.FromSeconds(5), Ct);

        Assert.Equal(["early", "late"], seen);
        Assert.Equal(3, buffer.LastSequence);
        Assert.Null(buffer.CompletedBy);
    }

    [Fact]
    public async Task Only_the_last_capacity_items_are_kept_and_the_first_completion_wins()
    {
        var buffer = new SequencedBuffer<long>(capacity: 3);
        for (var i = 0; i < 10; i++)
            buffer.Add(seq => seq);
        var error = new InvalidOperationException("first");
        buffer.Complete(error);
        buffer.Complete(new InvalidOperationException("second"));

        var all = new List<long>();
        await foreach (var item in buffer.ReadAsync(0, Ct))
            all.Add(item);

        Assert.Equal([8L, 9L, 10L], all);
        Assert.Equal([8L, 9L, 10L], buffer.Snapshot());
        Assert.Same(error, buffer.CompletedBy);
    }

    [Fact]
    public async Task A_waiting_reader_is_cancelled_by_its_token()
    {
        var buffer = new SequencedBuffer<int>(capacity: 4);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var unused in buffer.ReadAsync(0, cts.Token))
                Assert.Fail("nothing was added");
        });
    }
}
