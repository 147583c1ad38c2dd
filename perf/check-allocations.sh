#!/usr/bin/env bash
# Runs the micro benchmarks (perf/StreamClone.Benchmarks) with a short job and fails when one of
# them allocates more per operation than its budget in perf/allocation-budgets.json. The gate is
# allocations, not time: timings on a shared 2-core machine are too noisy to fail a build on, so
# they are only printed.
#
# Usage: perf/check-allocations.sh [--check-only] [extra BenchmarkDotNet arguments]
#   --check-only      skip the run and check the results already in $ARTIFACTS
#   FILTER='*Hash*'   environment: which benchmarks to run (default all)
#   JOB=short         environment: BenchmarkDotNet job; 'short' = 3 warm-up and 3 measured
#                     iterations, ~1.5-2 min for all thirteen benchmarks in-process on 2 cores
#   ARTIFACTS=dir     environment: where BenchmarkDotNet writes (default artifacts/benchmarks)
#   BUDGETS=file      environment: another budget file (default perf/allocation-budgets.json)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
budgets=${BUDGETS:-$here/allocation-budgets.json}
artifacts=${ARTIFACTS:-$root/artifacts/benchmarks}
job=${JOB:-short}
filter=${FILTER:-*}

command -v jq >/dev/null || { echo "check-allocations: jq is required (apt-get install -y jq)" >&2; exit 2; }

if [[ "${1:-}" == "--check-only" ]]; then
  shift
else
  project="$here/StreamClone.Benchmarks"
  dotnet build -c Release --nologo -v quiet "$project/StreamClone.Benchmarks.csproj"
  rm -rf "$artifacts/results"
  # In-process: no generated project to build per benchmark type (minutes saved, and the
  # generated project would inherit this repository's warnings-as-errors).
  dotnet "$project/bin/Release/net10.0/StreamClone.Benchmarks.dll" \
    --filter "$filter" --job "$job" --inProcess --artifacts "$artifacts" "$@"
fi

shopt -s nullglob
results=("$artifacts"/results/*-report-full.json)
if (( ${#results[@]} == 0 )); then
  echo "check-allocations: no BenchmarkDotNet JSON results in $artifacts/results" >&2
  exit 2
fi

# One line per benchmark: status, name, allocated, allowed, mean ns, MB/s.
report=$(jq -r -n --slurpfile cfg "$budgets" '
  $cfg[0] as $c
  | [inputs.Benchmarks[]] | .[]
  | (.Type + "." + .Method) as $base
  | (if .Parameters == "" then $base else $base + "(" + .Parameters + ")" end) as $name
  | ([$c.benchmarks[] | select((.name | ltrimstr("WARN-ON-FAIL_")) == $name)]
     + [$c.benchmarks[] | select((.name | ltrimstr("WARN-ON-FAIL_")) == $base)]) as $matches
  | .Memory.BytesAllocatedPerOperation as $alloc
  | .Statistics.Mean as $mean
  | if ($matches | length) == 0 then
      ["NO-BUDGET", $name, $alloc, "-", ($mean | floor), "-"]
    else
      $matches[0] as $b
      | ($b.bytes * (1 + $c.tolerancePercent / 100) + ($b.toleranceBytes // $c.toleranceBytes) | floor) as $allowed
      | (if $b.bytesPerOp then ($b.bytesPerOp / $mean * 1000 | floor) else "-" end) as $mbps
      | (if $alloc <= $allowed then "ok"
         elif ($b.name | startswith("WARN-ON-FAIL_")) then "WARN"
         else "OVER" end) as $status
      | [$status, $name, $alloc, $allowed, ($mean | floor), $mbps]
    end
  | @tsv' "${results[@]}")

{
  printf 'status\tbenchmark\tallocated B/op\tallowed B/op\tmean ns\tMB/s\n'
  printf '%s\n' "$report"
} | column -t -s $'\t'

failures=$(printf '%s\n' "$report" | awk -F'\t' '$1 == "OVER" || $1 == "NO-BUDGET"' | wc -l)
if (( failures > 0 )); then
  echo "check-allocations: $failures benchmark(s) over budget or without a budget in $budgets" >&2
  exit 1
fi
echo "check-allocations: all $(printf '%s\n' "$report" | wc -l) benchmarks within their allocation budgets"
