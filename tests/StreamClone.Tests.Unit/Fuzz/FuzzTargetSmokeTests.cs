using StreamClone.Tests.Fuzz;
using StreamClone.Tests.Fuzz.Targets;

namespace StreamClone.Tests.Unit.Fuzz;

/// <summary>
/// Every fuzz target (tests/StreamClone.Tests.Fuzz; perf/fuzz.sh runs them for minutes) runs its seeds and a
/// few hundred mutations here: the seeds are real encodings that must decode, the mutations must end in the
/// decoder's documented errors, and a target broken by a product change shows up in the unit run.
/// </summary>
public class FuzzTargetSmokeTests
{
    public static TheoryData<string> Targets => [.. FuzzTargets.All.Select(t => t.Name)];

    [Theory]
    [MemberData(nameof(Targets))]
    public void Seeds_and_mutations_end_only_in_expected_errors(string name)
    {
        var target = FuzzTargets.Create(name);
        try
        {
            // A fixed seed keeps the mutations the same on every run; the time bound is a generous guard only.
            var loop = new FuzzLoop(target, crashDir: null, status: null) { ExecTimeout = TimeSpan.FromSeconds(30) };
            loop.Run(TimeSpan.FromMinutes(2), maxExecs: 300, seed: 6);
            Assert.True(loop.Crashes == 0, $"{name}: {loop.Crashes} of {loop.Execs} inputs crashed, first: {loop.FirstCrash}");
        }
        finally
        {
            (target as IDisposable)?.Dispose();
        }
    }
}
