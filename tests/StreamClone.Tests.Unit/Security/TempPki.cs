using StreamClone.Shared.Security;

namespace StreamClone.Tests.Unit.Security;

/// <summary>A cluster PKI in a fresh temp directory, deleted with the test.</summary>
internal sealed class TempPki : IDisposable
{
    private readonly string _parent = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"streamclone-pki-test-{Guid.NewGuid():N}");

    public TempPki(bool create = true)
    {
        Directory.CreateDirectory(_parent);
        Path = System.IO.Path.Combine(_parent, "pki");
        Pki = create ? ClusterPki.Init(Path) : null!;
    }

    /// <summary>The PKI directory (not created until the test or <see cref="ClusterPki.Init"/> does).</summary>
    public string Path { get; }

    public ClusterPki Pki { get; }

    public NodeCredentials Node(string name) => Pki.GetOrIssueNode(name);

    public void Dispose() => Directory.Delete(_parent, recursive: true);
}
