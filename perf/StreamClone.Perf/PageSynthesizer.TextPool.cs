using System.Text;

namespace StreamClone.Perf;

internal sealed partial class PageSynthesizer
{
    /// <summary>
    /// Log lines and prose from a Zipf-like vocabulary: 120 common words plus 1,400 pseudo-words
    /// built from syllables. zstd -1 brings this to 38 % in 64 KiB blocks, in the range of English
    /// prose; real service logs, more repetitive, compress further.
    /// </summary>
    private static class TextPool
    {
        private static readonly string[] CommonWords =
        [
            "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by",
            "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had",
            "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if",
            "more", "when", "will", "would", "who", "so", "no", "request", "response", "error", "user",
            "session", "connection", "timeout", "server", "client", "cache", "file", "block", "page",
            "memory", "disk", "network", "retry", "failed", "success", "started", "stopped", "value",
            "null", "true", "false", "config", "service", "worker", "thread", "queue", "message", "event",
            "handler", "process", "kernel", "module", "driver", "device", "mount", "path", "object", "id",
            "status", "ok", "warning", "debug", "info", "trace", "latency", "bytes", "count", "total",
            "index", "table", "query", "insert", "update", "delete", "select", "from", "where", "order",
            "limit", "commit", "rollback",
        ];

        private static readonly string[] Syllables =
        [
            "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "tor", "ex", "an", "el",
            "in", "on", "ur", "al", "is", "ter", "com", "pro", "ver", "con", "dis", "ment", "tion", "ing",
            "ed", "er", "ly", "ous", "ive", "ate", "ble",
        ];

        private static readonly string[] Levels = ["INFO ", "DEBUG", "WARN ", "INFO ", "INFO ", "ERROR", "TRACE"];

        public static byte[] Build(ref Xoshiro256 rng, int size)
        {
            var vocabulary = new string[1520];
            CommonWords.CopyTo(vocabulary, 0);
            var word = new StringBuilder();
            for (var i = CommonWords.Length; i < vocabulary.Length; i++)
            {
                word.Clear();
                var syllables = 1 + rng.Next(4);
                for (var s = 0; s < syllables; s++)
                {
                    word.Append(Syllables[rng.Next(Syllables.Length)]);
                }
                vocabulary[i] = word.ToString();
            }

            var text = new StringBuilder(size + 512);
            var seconds = 8L * 3600;
            while (text.Length < size)
            {
                if (rng.Next(3) != 0)
                {
                    seconds += rng.Next(3);
                    text.Append("2026-11-26T")
                        .Append((seconds / 3600 % 24).ToString("D2")).Append(':')
                        .Append((seconds / 60 % 60).ToString("D2")).Append(':')
                        .Append((seconds % 60).ToString("D2")).Append('.')
                        .Append(rng.Next(1000).ToString("D3")).Append("Z ")
                        .Append(Levels[rng.Next(Levels.Length)]).Append(" [worker-")
                        .Append(rng.Next(32)).Append("] ");
                    AppendWords(ref rng, text, vocabulary, 4 + rng.Next(10));
                    text.Append(" id=").Append(rng.Next(1 << 20)).Append(" took=").Append(rng.Next(500)).Append("ms\n");
                }
                else
                {
                    AppendWords(ref rng, text, vocabulary, 8 + rng.Next(20));
                    text.Append(".\n");
                }
            }
            return Encoding.ASCII.GetBytes(text.ToString(0, size));
        }

        private static void AppendWords(ref Xoshiro256 rng, StringBuilder text, string[] vocabulary, int count)
        {
            for (var i = 0; i < count; i++)
            {
                // u^3 skews towards the front of the vocabulary: a handful of words make most of the
                // text, as in natural language and logs.
                var u = rng.NextDouble();
                text.Append(vocabulary[(int)(u * u * u * vocabulary.Length)]);
                if (i + 1 < count)
                {
                    text.Append(' ');
                }
            }
        }
    }
}
