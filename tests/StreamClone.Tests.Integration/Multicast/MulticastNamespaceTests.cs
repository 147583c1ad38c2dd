using System.Net;
using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Diagnostics;
using StreamClone.Shared.Multicast;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Multicast;

/// <summary>
/// Real multicast between network namespaces: a sender on host 1 and receivers on hosts 2 and 3 of one bridged segment.
/// Reports go from each receiver to the sender as the control lane would carry them (MessagePack-encoded and decoded),
/// in process. About 32 MiB of random batches must arrive intact and in order at both, also with 5% of the UDP arriving
/// at one receiver dropped by nftables, and then the repairs stay under twice the datagrams lost.
/// </summary>
public class MulticastNamespaceTests(ITestOutputHelper output)
{
    private const int TotalBytes = 32 << 20;
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(2);

    [Fact]
    public Task Every_batch_arrives_intact_at_both_receivers() => RunAsync(lossPercent: 0);

    [Fact]
    public Task With_five_percent_loss_at_one_receiver_every_batch_arrives_and_repairs_stay_under_twice_the_losses() =>
        RunAsync(lossPercent: 5);

    private async Task RunAsync(int lossPercent)
    {
        using var segment = NamespaceSegment.Create(hosts: 3);
        var dropped = lossPercent > 0 ? segment.DropIncomingUdp(host: 3, lossPercent) : null;
        var batches = RandomBatches(TotalBytes, seed: 8);
        var source = new MemoryBatchSource(batches);
        var lagging = new List<string>();
        using var sender = segment.RunIn(1, () => new MulticastSender(source, senderId: 0x5C, keyId: 1, new MulticastSenderOptions
        {
            Group = new IPEndPoint(IPAddress.Parse("239.77.0.1"), 5400),
            InterfaceName = "eth0",
            // Loss here is random drop, not congestion: the floor keeps the run short whatever the lossy receiver reports.
            MinRateBytesPerSecond = 16_000_000,
            InitialRateBytesPerSecond = 16_000_000,
            MaxRateBytesPerSecond = 48_000_000,
        }, (receiver, _) => { lock (lagging) { lagging.Add(receiver); } }));

        using var stop = new CancellationTokenSource();
        var receivers = new List<(MulticastReceiver Receiver, Delivery Delivery)>();
        try
        {
            foreach (var host in new[] { 2, 3 })
            {
                var delivery = new Delivery(batches);
                var id = $"h{host}";
                var join = RoundTrip(sender.CreateJoin(firstSequence: 1));
                var receiver = segment.RunIn(host, () => MulticastReceiver.Open(join, new MulticastReceiverOptions { InterfaceName = "eth0" },
                    delivery.OnBatch,
                    (report, _) =>
                    {
                        sender.OnReport(id, RoundTrip(report));
                        return ValueTask.CompletedTask;
                    }));
                receivers.Add((receiver, delivery));
            }
            var running = receivers.Select(r => r.Receiver.RunAsync(stop.Token)).ToList();
            running.Add(sender.RunAsync(1, stop.Token));

            var all = Task.WhenAll(receivers.Select(r => r.Delivery.Done));
            var first = await Task.WhenAny(all, Task.WhenAny(running)).WaitAsync(Bound);
            if (first != all)
            {
                // A loop ended before delivery finished: its exception is the cause.
                await await Task.WhenAny(running);
            }
            await all;
            await stop.CancelAsync();
            foreach (var task in running)
            {
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => task);
            }
        }
        finally
        {
            await stop.CancelAsync();
            foreach (var (receiver, _) in receivers)
            {
                receiver.Dispose();
            }
        }

        foreach (var (receiver, delivery) in receivers)
        {
            Assert.Equal(batches.Count, delivery.Delivered);
            Assert.Equal(0, receiver.Dropped(DatagramDropReason.Forged));
            Assert.Equal(0, receiver.Dropped(DatagramDropReason.Malformed));
            Assert.Equal(0, receiver.Dropped(DatagramDropReason.Foreign));
        }
        Assert.Empty(lagging);
        var lost = receivers.Sum(r => r.Receiver.DatagramsLost);
        output.WriteLine($"{batches.Count} batches, {sender.DatagramsSent} datagrams sent, {sender.RepairsSent} repairs, lost per receiver "
            + $"{string.Join(", ", receivers.Select(r => r.Receiver.DatagramsLost))}, final rate {sender.RateBytesPerSecond} B/s, GRTT {sender.Grtt}");
        if (dropped is not null)
        {
            var droppedByRule = dropped();
            Assert.True(droppedByRule > 0, "the nftables rule dropped nothing");
            // The lossy receiver counts losses from gaps in the sender's datagram counter: every one it counted was dropped
            // by the rule (its 32 MiB buffer holds the whole run, so nothing overflows), and the rule's drops after the last
            // datagram it heard (trailing heartbeats) leave no gap to count.
            var lossyLost = receivers[1].Receiver.DatagramsLost;
            Assert.InRange(lossyLost, (droppedByRule / 2) + 1, droppedByRule);
            Assert.True(sender.RepairsSent > 0, "losses but no repairs");
        }
        Assert.True(sender.RepairsSent < Math.Max(1, 2 * lost), $"{sender.RepairsSent} repairs for {lost} datagrams lost");
    }

    [Fact]
    public async Task A_receiver_that_stops_taking_batches_is_reported_as_lagging_and_the_other_finishes()
    {
        using var segment = NamespaceSegment.Create(hosts: 3);
        var batches = RandomBatches(TotalBytes, seed: 9);
        var options = new MulticastSenderOptions
        {
            Group = new IPEndPoint(IPAddress.Parse("239.77.0.2"), 5401),
            InterfaceName = "eth0",
            MinRateBytesPerSecond = 16_000_000,
            InitialRateBytesPerSecond = 16_000_000,
            MaxRateBytesPerSecond = 48_000_000,
            MaxLagBatches = 16,
        };
        var lagged = new TaskCompletionSource<(string Receiver, long Next)>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sender = segment.RunIn(1, () => new MulticastSender(new MemoryBatchSource(batches), 0x5D, 1, options,
            (receiver, next) => lagged.TrySetResult((receiver, next))));
        using var stop = new CancellationTokenSource();
        var healthy = new Delivery(batches);
        var stuck = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var fast = segment.RunIn(2, () => MulticastReceiver.Open(RoundTrip(sender.CreateJoin(1)),
            new MulticastReceiverOptions { InterfaceName = "eth0" }, healthy.OnBatch,
            (report, _) =>
            {
                sender.OnReport("h2", RoundTrip(report));
                return ValueTask.CompletedTask;
            }));
        // Host 3 holds its first batch until the sender gives up on it: its next in-order sequence stays at 2.
        using var slow = segment.RunIn(3, () => MulticastReceiver.Open(RoundTrip(sender.CreateJoin(1)),
            new MulticastReceiverOptions { InterfaceName = "eth0" },
            async (batch, ct) =>
            {
                using (batch)
                {
                    await stuck.Task.WaitAsync(ct);
                }
            },
            (report, _) =>
            {
                sender.OnReport("h3", RoundTrip(report));
                return ValueTask.CompletedTask;
            }));
        List<Task> running = [fast.RunAsync(stop.Token), slow.RunAsync(stop.Token), sender.RunAsync(1, stop.Token)];
        try
        {
            var (receiver, next) = await lagged.Task.WaitAsync(Bound);
            Assert.Equal("h3", receiver);
            // Batch 1 was handed over (and is held by the callback), so its next in-order sequence is 2.
            Assert.Equal(2, next);
            stuck.TrySetResult();
            await healthy.Done.WaitAsync(Bound);
            Assert.Equal(batches.Count, healthy.Delivered);
        }
        finally
        {
            await stop.CancelAsync();
            foreach (var task in running)
            {
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => task);
            }
        }
    }

    private static T RoundTrip<T>(T message) =>
        MessagePackSerializer.Deserialize<T>(MessagePackSerializer.Serialize(message, MessagePackDefaults.Options), MessagePackDefaults.Options);

    private static List<byte[]> RandomBatches(int total, int seed)
    {
        var random = new Random(seed);
        var batches = new List<byte[]>();
        for (var sum = 0; sum < total;)
        {
            var batch = new byte[random.Next(1, 1 << 20)];
            random.NextBytes(batch);
            batches.Add(batch);
            sum += batch.Length;
        }
        return batches;
    }

    /// <summary>Checks each delivered batch: the next sequence, the same bytes as sent.</summary>
    private sealed class Delivery(List<byte[]> batches)
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Delivered { get; private set; }

        public Task Done => _done.Task;

        public ValueTask OnBatch(ReassembledBatch batch, CancellationToken cancellationToken)
        {
            using (batch)
            {
                if (batch.Sequence != Delivered + 1 || !batch.Bytes.Span.SequenceEqual(batches[Delivered]))
                {
                    _done.TrySetException(new InvalidOperationException(
                        $"batch {batch.Sequence} arrived after {Delivered} with {(batch.Sequence == Delivered + 1 ? "other bytes" : "a gap")}"));
                    return ValueTask.CompletedTask;
                }
                Delivered++;
                if (Delivered == batches.Count)
                {
                    _done.TrySetResult();
                }
            }
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>A complete encoded stream held in memory (the relay's EncodedStream plays this part in production).</summary>
    private sealed class MemoryBatchSource(List<byte[]> batches) : IMulticastBatchSource
    {
        public long Count => batches.Count;
        public bool IsComplete => true;

        public ValueTask<bool> WaitForBatchAsync(long sequence, CancellationToken cancellationToken) =>
            ValueTask.FromResult(sequence <= batches.Count);

        public ValueTask<IMulticastBatchLease> ReadBatchAsync(long sequence, CancellationToken cancellationToken) =>
            ValueTask.FromResult<IMulticastBatchLease>(new Lease(batches[checked((int)sequence - 1)]));

        private sealed class Lease(byte[] bytes) : IMulticastBatchLease
        {
            public ReadOnlyMemory<byte> Bytes => bytes;

            public void Dispose()
            {
            }
        }
    }
}
