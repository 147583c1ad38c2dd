using StreamClone.Tests.Integration.Infrastructure;

[assembly: AssemblyFixture(typeof(TestConfigHome))]

namespace StreamClone.Tests.Integration.Infrastructure;

/// <summary>
/// Points XDG_CONFIG_HOME of this test process, and so of every streamclone process it starts, at a
/// temp directory for the whole run: nodes use the default PKI ($XDG_CONFIG_HOME/streamclone/pki,
/// created on first use) unless told otherwise, and a test run must neither read the user's PKI nor
/// leave one behind. Removed when the run ends.
/// </summary>
public sealed class TestConfigHome : IDisposable
{
    public TestConfigHome()
    {
        Directory.CreateDirectory(Path);
        Environment.SetEnvironmentVariable("XDG_CONFIG_HOME", Path);
    }

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"streamclone-test-config-{Guid.NewGuid():N}");

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
