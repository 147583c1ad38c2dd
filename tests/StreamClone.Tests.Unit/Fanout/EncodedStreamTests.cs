using System.Security.Cryptography;
using MessagePack;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Fanout;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Shared.Transport;

namespace StreamClone.Tests.Unit.Fanout;

/// <summary>The encoded stream: appended once, read by many at their own pace, from an unlinked spill file.</summary>
public sealed class EncodedStreamTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly BatchBufferPool _pool = new();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly SnapshotOfferMessage Offer = new()
    {
        SnapshotId = "stream-test",
        Objects = [new ObjectInfo { Id = 0, Name = "memory", Kind = ObjectKind.Memory, Size = 1 << 20, ChunkSize = 4096 }],
    };

    private EncodedStream NewStream() => new(Offer, _dir.Path, _pool);

    private static ChunkBatchMessage Header(long first) => new()
    {
        ObjectId = 0,
        FirstIndex = first,
        Kinds = [(byte)ChunkEntryKind.Data],
        Hashes = RandomNumberGenerator.GetBytes(32),
        Codec = PayloadCodec.None,
        RawLength = 4096,
    };

    [Fact]
    public async Task Appends_are_numbered_from_one_and_read_back_as_written_by_every_reader()
    {
        using var stream = NewStream();
        var payloads = Enumerable.Range(0, 5).Select(i => RandomNumberGenerator.GetBytes(100 + i)).ToArray();
        var headers = payloads.Select((_, i) => Header(i)).ToArray();
        for (var i = 0; i < payloads.Length; i++)
        {
            Assert.Equal(i + 1, stream.Append(headers[i], payloads[i]));
            Assert.Equal(i + 1, headers[i].Sequence);
        }
        Assert.Equal(5, stream.Count);

        for (var reader = 0; reader < 2; reader++)
        {
            for (var i = 0; i < payloads.Length; i++)
            {
                using var batch = await stream.ReadAsync(i + 1, Ct);
                Assert.NotNull(batch);
                Assert.Equal(i + 1, batch.Header.Sequence);
                Assert.Equal(i, batch.Header.FirstIndex);
                Assert.Equal(headers[i].Hashes, batch.Header.Hashes);
                Assert.Equal(payloads[i], batch.Payload.Span.ToArray());
            }
        }
        using (var raw = await stream.ReadRawAsync(3, Ct))
        {
            Assert.NotNull(raw);
            var header = MessagePackSerializer.Deserialize<ChunkBatchMessage>(raw.Header, MessagePackDefaults.Options, Ct);
            Assert.Equal(3, header.Sequence);
            Assert.Equal(payloads[2], raw.Payload.ToArray());
        }
        Assert.Equal(0, _pool.Outstanding);
    }

    [Fact]
    public async Task A_reader_waits_for_the_batch_and_wakes_on_append_then_gets_null_past_the_end_once_complete()
    {
        using var stream = NewStream();
        var waiting = stream.ReadAsync(1, Ct).AsTask();
        var pastEnd = stream.ReadAsync(2, Ct).AsTask();
        Assert.False(waiting.IsCompleted);

        stream.Append(Header(0), [1, 2, 3]);
        using (var batch = await waiting.WaitAsync(TimeSpan.FromSeconds(10), Ct))
        {
            Assert.Equal([1, 2, 3], batch!.Payload.Span.ToArray());
        }
        Assert.False(pastEnd.IsCompleted);

        stream.Complete(new SnapshotCompleteMessage { RootHashes = [] });
        Assert.Null(await pastEnd.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        Assert.True(stream.IsComplete);
        Assert.Null(await stream.ReadRawAsync(5, Ct));
        Assert.Throws<InvalidOperationException>(() => stream.Append(Header(1), []));
    }

    [Fact]
    public async Task A_failed_stream_gives_every_waiting_and_later_reader_its_reason()
    {
        using var stream = NewStream();
        stream.Append(Header(0), [1]);
        var waiting = stream.ReadAsync(2, Ct).AsTask();
        var reason = CloseReason.Fault(ProtocolError.IncompleteSnapshot, "the source cannot deliver snapshot stream-test: disk gone");
        stream.Fail(reason);

        var failed = await Assert.ThrowsAsync<EncodedStreamFailedException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        Assert.Same(reason, failed.Reason);
        var later = await Assert.ThrowsAsync<EncodedStreamFailedException>(async () => await stream.ReadAsync(1, Ct));
        Assert.Equal(CloseKind.Fault, later.Reason.Kind);
    }

    [Fact]
    public void The_spill_file_has_no_name_and_memory_does_not_hold_the_payloads()
    {
        using var stream = NewStream();
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir.Path));
        var payload = new byte[64 << 10];
        for (var i = 0; i < 64; i++)
        {
            stream.Append(Header(i), payload);
        }
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir.Path));
        Assert.True(stream.SpilledBytes >= 64L * payload.Length);
        Assert.Equal(0, _pool.Outstanding);
    }

    [Fact]
    public async Task Readers_at_their_own_pace_see_every_batch_while_the_appender_runs()
    {
        using var stream = NewStream();
        const int Batches = 300;
        var readers = Enumerable.Range(0, 4).Select(r => Task.Run(async () =>
        {
            for (long seq = 1; ; seq++)
            {
                using var batch = await stream.ReadAsync(seq, Ct);
                if (batch is null)
                {
                    return seq - 1;
                }
                Assert.Equal(seq, batch.Header.Sequence);
                Assert.Equal(BitConverter.GetBytes(seq), batch.Payload.Span.ToArray());
                if (r == 0 && seq % 50 == 0)
                {
                    // One slow reader: the others and the appender do not wait for it.
                    await Task.Yield();
                }
            }
        }, Ct)).ToArray();
        var appender = Task.Run(() =>
        {
            for (long i = 1; i <= Batches; i++)
            {
                stream.Append(Header(i - 1), BitConverter.GetBytes(i));
            }
            stream.Complete(new SnapshotCompleteMessage { RootHashes = [] });
        }, Ct);
        await appender;
        Assert.All(await Task.WhenAll(readers).WaitAsync(TimeSpan.FromMinutes(1), Ct), n => Assert.Equal(Batches, n));
        Assert.Equal(0, _pool.Outstanding);
    }

    public void Dispose() => _dir.Dispose();
}
