using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Running;

// Arguments go to BenchmarkDotNet: e.g. `--filter '*' --job short --inProcess` (see
// perf/check-allocations.sh). The full JSON export carries each benchmark's allocated bytes per
// operation, which the budget check reads.
var config = DefaultConfig.Instance
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddExporter(JsonExporter.Full);
BenchmarkSwitcher.FromAssembly(typeof(StreamClone.Benchmarks.FrameBenchmarks).Assembly).Run(args, config);
