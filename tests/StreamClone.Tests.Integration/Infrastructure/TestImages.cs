namespace StreamClone.Tests.Integration.Infrastructure;

// TEMPORARY until perf's ImageGenerator lands: zero, random, text and repeated pages, seeded.
public static class TestImages
{
    public static string Create(TempDir dir, string name, long size, int seed)
    {
        var path = dir.File(name);
        var random = new Random(seed);
        var page = new byte[4096];
        var text = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("kernel: virtio_blk registered; ", 200)))[..4096];
        using var file = File.Create(path);
        for (long at = 0; at < size; at += page.Length)
        {
            var r = random.Next(10);
            if (r < 4)
            {
                Array.Clear(page);
            }
            else if (r < 6)
            {
                random.NextBytes(page);
            }
            else
            {
                text.CopyTo(page, 0);
                page[random.Next(4096)] = (byte)random.Next(256);
            }
            file.Write(page, 0, (int)Math.Min(page.Length, size - at));
        }
        return path;
    }
}
