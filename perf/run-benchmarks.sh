#!/usr/bin/env bash
# The figures in the README's table, one command each (JSON lines into perf/results/). Generates the
# seeded images once (1 GiB and 4 GiB memory-like, plus a 5%-changed copy) under ~/.cache/streamclone/bench.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sc="$root/streamclone"
images="${HOME}/.cache/streamclone/bench"
out="$root/perf/results"
mkdir -p "$images" "$out"
[ -f "$images/mem-1g.img" ] || "$sc" image generate --out "$images/mem-1g.img" --size 1G --profile memory --seed 1
[ -f "$images/mem-1g-5pct.img" ] || "$sc" image mutate --in "$images/mem-1g.img" --out "$images/mem-1g-5pct.img" --percent 5 --seed 2
[ -f "$images/mem-4g.img" ] || "$sc" image generate --out "$images/mem-4g.img" --size 4G --profile memory --seed 4

run() { local name=$1; shift; echo "== $name: streamclone $*" >&2; "$sc" "$@" | tail -1 | tee "$out/$name.json"; }
run pipeline-1g        bench pipeline --input "$images/mem-1g.img" --second "$images/mem-1g-5pct.img" --baseline --json
run pipeline-1g-lowat0 bench pipeline --input "$images/mem-1g.img" --notsent-lowat 0 --json
run pipeline-1g-tls    bench pipeline --input "$images/mem-1g.img" --compare-plain --json
run pipeline-4g        bench pipeline --input "$images/mem-4g.img" --probe-reads 0 --json
run snapshot-256m      bench snapshot --memory 256M --json
run snapshot-1g        bench snapshot --memory 1G --json
"$sc" bench pipeline --input "$images/mem-1g.img" --sweep --out "$out/sweep" >&2
run chaos-30           bench chaos --runs 30 --json
"$root/perf/fuzz.sh" --seconds 60 --parallel 2 | tee "$out/fuzz-60.jsonl"
