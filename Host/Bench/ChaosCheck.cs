using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using StreamClone.Store;

namespace StreamClone.Host.Bench;

/// <summary>What the store of a finished run holds, against the source image.</summary>
internal sealed record StoreCheck(bool Readable, string? Error, bool Complete, long PresentChunks, long TotalChunks, long WrongChunks);

/// <summary>The judgements of `bench chaos`: is an exit a clear failure, does the store hold only right bytes.</summary>
internal static partial class ChaosCheck
{
    // The console logger's single-line format (HostServices.CreateLogging): "HH:mm:ss.fff level: category[id] message".
    [GeneratedRegex(@"^\d\d:\d\d:\d\d\.\d{3} (trce|dbug|info|warn|fail|crit): ")]
    private static partial Regex LogLine();

    // A .NET stack frame ("   at Namespace.Type.Method(" ), on its own line or folded into a single-line log entry.
    [GeneratedRegex(@"(^|\s)at [A-Za-z_][\w.`<>|+\[\],]*\(")]
    private static partial Regex StackFrame();

    /// <summary>
    /// A clear failure reports its cause in exactly one line, the last: the host's `streamclone: …`
    /// (Program.cs), or the session's log line at fail level when the session already logged the cause
    /// (then the host adds nothing); no other line is outside the log, and nowhere a stack trace or an
    /// unhandled exception.
    /// </summary>
    public static bool IsClearFailure(string stderr, out string lastLine)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var last = lines.LastOrDefault() ?? "";
        lastLine = last;
        if (HasStackTrace(stderr))
        {
            return false;
        }
        var plain = lines.Where(l => !LogLine().IsMatch(l)).ToList();
        var failures = lines.Where(l => l.StartsWith("streamclone: ", StringComparison.Ordinal)
            || l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal)).ToList();
        return failures.Count == 1 && failures[0] == last && plain.All(l => l == last);
    }

    public static bool HasStackTrace(string stderr) =>
        stderr.Contains("Unhandled exception", StringComparison.OrdinalIgnoreCase)
        || stderr.Split('\n').Any(l => StackFrame().IsMatch(l));

    /// <summary>
    /// Opens the store as the next sink would (journal replay included) and compares every chunk it
    /// calls present with the image's bytes at that place: the ground truth, independent of the hashes
    /// the store was given.
    /// </summary>
    public static async Task<StoreCheck> CheckStoreAsync(string store, string snapshotId, string image, CancellationToken ct)
    {
        if (!Directory.Exists(store))
        {
            return new StoreCheck(true, null, false, 0, 0, 0);
        }
        ChunkStore chunks;
        try
        {
            chunks = ChunkStore.Open(store, NullLogger.Instance);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return new StoreCheck(false, $"{ex.GetType().Name}: {ex.Message}", false, 0, 0, 0);
        }
        using (chunks)
        {
            var snapshot = chunks.GetSnapshot(snapshotId);
            if (snapshot is null)
            {
                return new StoreCheck(true, null, false, 0, 0, 0);
            }
            using var handle = File.OpenHandle(image);
            var imageLength = RandomAccess.GetLength(handle);
            long wrong = 0;
            var expected = new byte[1 << 20];
            var actual = new byte[1 << 20];
            foreach (var obj in snapshot.Objects)
            {
                var chunkSize = obj.ChunkSize;
                var count = (obj.Size + chunkSize - 1) / chunkSize;
                for (long index = 0; index < count; index++)
                {
                    ct.ThrowIfCancellationRequested();
                    if (!snapshot.IsPresent(obj.Id, index))
                    {
                        continue;
                    }
                    var offset = index * chunkSize;
                    var length = (int)Math.Min(chunkSize, obj.Size - offset);
                    // The chaos source offers one image: object 0 is that image.
                    var got = snapshot.Read(obj.Id, offset, actual.AsSpan(0, length));
                    var want = obj.Id == 0 && offset < imageLength
                        ? await RandomAccess.ReadAsync(handle, expected.AsMemory(0, length), offset, ct)
                        : 0;
                    if (got != length || want != length || !actual.AsSpan(0, length).SequenceEqual(expected.AsSpan(0, length)))
                    {
                        wrong++;
                    }
                }
            }
            var complete = snapshot.IsComplete && snapshot.PresentChunks == snapshot.TotalChunks && imageLength == snapshot.Objects.Sum(o => o.Size);
            return new StoreCheck(true, null, complete, snapshot.PresentChunks, snapshot.TotalChunks, wrong);
        }
    }
}
