using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Shared;
using StreamClone.Shared.Buffers;
using StreamClone.Shared.Model;
using StreamClone.Shared.Protocol;
using StreamClone.Store;
using StreamClone.Store.Upstream;
using StreamClone.Tests.Integration.Infrastructure;

namespace StreamClone.Tests.Integration.Pipeline;

/// <summary>
/// A real sink session against a hand-made source whose batches fail verification: the session
/// fails with the one reason, and once it is disposed every buffer it rented is back in its pool,
/// including those its faulted stages dropped.
/// </summary>
public class SinkBufferTests
{
    private const int Page = 4096;
    private const int Chunks = 64;
    private const int Batches = 24;

    [Fact]
    public async Task A_session_failed_by_bad_batches_gives_back_every_buffer_and_keeps_the_pool_bounded()
    {
        using var dir = new TempDir();
        using var store = ChunkStore.Open(dir.File("store"), NullLogger.Instance);
        var pool = new BatchBufferPool();
        var data = new byte[Chunks * Page];
        Random.Shared.NextBytes(data);
        var source = new HostileSource(System.Net.IPAddress.Loopback, new SnapshotOfferMessage
        {
            SnapshotId = "bad-batches",
            CreatedUtc = new DateTime(2026, 11, 30, 8, 0, 0, DateTimeKind.Utc),
            Origin = "hostile-test",
            Objects = [new ObjectInfo { Id = 0, Name = "mem", Kind = ObjectKind.Memory, Size = (long)Batches * Chunks * Page, ChunkSize = Page }],
        })
        {
            // Well-formed batches of incompressible pages whose hashes are all wrong: each one
            // reaches a verify worker, so the stages hold several when the first is refused.
            BulkFrames = (writer, output) =>
            {
                for (var b = 0; b < Batches; b++)
                {
                    writer.Write(output, FrameType.ChunkBatch, new ChunkBatchMessage
                    {
                        Sequence = b + 1,
                        ObjectId = 0,
                        FirstIndex = (long)b * Chunks,
                        Kinds = Enumerable.Repeat((byte)ChunkEntryKind.Data, Chunks).ToArray(),
                        Hashes = new byte[Chunks * ChunkHash.Size],
                        Codec = PayloadCodec.None,
                        RawLength = data.Length,
                    }, data);
                }
                return Task.CompletedTask;
            },
        };
        await using (source)
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            var session = await UpstreamSession.ConnectAsync(source.EndPoint, store, new UpstreamOptions { Buffers = pool, Parallelism = 2 }, TransportOptions.Default, NullLogger.Instance, stop.Token);
            await using (session)
            {
                var error = await Assert.ThrowsAsync<ProtocolViolationException>(session.RunAsync);
                Assert.Equal(ProtocolError.HashMismatch, error.Code);
            }
            Assert.Equal(0, pool.Outstanding);
            Assert.True(pool.Rented >= 2, $"{pool.Rented} leases: no batch reached verification");
            // Payload copies and decompressed data are all 256 KiB: one size class, kept up to its bound.
            Assert.True(pool.Retained <= pool.CapacityFor(data.Length), $"the pool kept {pool.Retained} arrays");
            await source.BulkEnded;
            Assert.Equal(ProtocolError.HashMismatch, source.ErrorReceived?.Code);
        }
    }
}
