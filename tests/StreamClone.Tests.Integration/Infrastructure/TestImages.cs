using StreamClone.Perf;

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>Seeded VM-memory-like images from perf's generator (zero runs, text, code, random, repeats).</summary>
public static class TestImages
{
    public static async Task<string> MemoryAsync(TempDir dir, string name, long size, int seed)
    {
        var path = dir.File(name);
        await ImageGenerator.GenerateAsync(path, size, ImageProfile.Memory, seed);
        return path;
    }
}
