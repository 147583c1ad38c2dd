#!/usr/bin/env bash
# Runs every fuzz target (tests/StreamClone.Tests.Fuzz) for N seconds each, two at a time, each in its
# own child process; prints one JSON line per target: {"target","execs","crashes","seconds"}.
# Crashing inputs land in perf/fuzz-crashes/<target>/ (replay one: `... repro <target> <file>`).
# Exits non-zero when any target crashed.
#   perf/fuzz.sh --seconds 60 [--target frame] [--parallel 2]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dotnet build tests/StreamClone.Tests.Fuzz -c Release -nologo -v q -clp:ErrorsOnly >&2
exec dotnet tests/StreamClone.Tests.Fuzz/bin/Release/net10.0/StreamClone.Tests.Fuzz.dll run --crashes perf/fuzz-crashes "$@"
