using StreamClone.Qemu;
using StreamClone.TestGuest;

namespace StreamClone.Tests.Integration.Qemu;

/// <summary>Builds the test guest once per run (GuestBuilder is idempotent: later runs only check the stamp).</summary>
public sealed class QemuFixture : IAsyncLifetime
{
    private GuestImage? _guest;

    public GuestImage Guest => _guest ?? throw new InvalidOperationException("fixture not initialised");

    public async ValueTask InitializeAsync() => _guest = await GuestBuilder.BuildAsync();

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <summary>TCG options the tests share: 256 MiB, 32 MiB of it filled by the workload.</summary>
    public VmOptions Tcg(int fillMiB = 32) => new() { Guest = Guest, Accel = VmAccel.Tcg, FillMiB = fillMiB };
}

/// <summary>QEMU tests run one VM at a time: the 2-core machine is shared.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class QemuCollection : ICollectionFixture<QemuFixture>
{
    public const string Name = "qemu";
}
