#!/usr/bin/env bash
# Test hosts as network namespaces, built from a small topology file; runs StreamClone nodes in them
# and reports, per node, bytes in/out, NACKs, repairs, time to completion and exit code.
#
#   perf/topology.sh run FILE [--json OUT] [--dir RUNDIR] [--timeout S] [--set KEY=VALUE]... [--bin CMD] [--keep]
#   perf/topology.sh up FILE [same options]     build and start, then leave it running (prints the run id and dir)
#   perf/topology.sh down NAME|RUNID            stop and delete every run of that topology name (or that one run)
#   perf/topology.sh status RUNID [status options]   ./streamclone status --topology-run RUNDIR, from inside the run's bridge namespace
#
# Topology file: one directive per line, words separated by blanks (no quoting), `#` starts a comment.
#   name NAME                    topology name ([a-z0-9-], ≤ 16 characters); runs are NAME-<random id>
#   link RATE                    every host's link (tc tbf both ways: host's eth0 and its bridge port); default 100mbit; `off` for none
#   link HOST RATE               one host's link
#   loss HOST P%                 nftables random drop of P% of the UDP arriving at HOST (integer percent)
#   timeout SECONDS              how long `run` waits for the awaited hosts (default 300; --timeout overrides)
#   await HOST...                hosts whose exit ends the run (default: every host of role `sink`)
#   metrics PORT|off             each node gets `--metrics {addr}:PORT` unless its options name --metrics (default 9100)
#   host NAME ROLE OPTIONS...    a host (10.77.0.N, N = its line's order) running `<bin> ROLE OPTIONS...`
#   barrier                      the hosts above are ready before the next host starts (even sinks, which start together)
# Placeholders in OPTIONS: {addr} / {addr:HOST} (host address), {dir} / {dir:HOST} (a per-host data path
# under the run directory, not created), {run} (the run directory), {KEY} (from --set KEY=VALUE).
# Hosts start in file order; a host with `--listen ADDR:PORT` must be ready before the next starts: listening on that
# port, and answering on its metrics endpoint (or have ended). Consecutive hosts without --listen (sinks) start
# together, and are ready (metrics answering) before the next listening host starts and before `up` returns.
# The run ends when every awaited host exited (all 0: success), when any node exits non-zero (failure), or at
# the timeout (failure). Everything (processes, namespaces) is torn down on exit, INT and TERM, failed or not;
# a stale run of the same name (owner gone, or left by `up`) is torn down first. Bytes in/out are the host's
# eth0 counters (data, repairs, control, and the few scrapes of its metrics); NACKs and repairs are the last
# scrape of its metrics endpoint (every second while it runs, and once just before the script stops it).
# Needs root, iproute2, tc, curl, jq, and nftables for `loss` (installed when missing).
set -euo pipefail
# Command substitutions (placeholder expansion) fail the script too, not just themselves.
shopt -s inherit_errexit
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state_root=/run/streamclone-topology
subnet=10.77.0
bridge_addr="$subnet.254"

die() { echo "topology: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# ---------- topology file ----------
topo_name=""
topo_link=100mbit
topo_timeout=300
topo_metrics=9100
hosts=()            # host names in order
declare -A role=() opts=() link=() loss=() awaited=() barrier_before=()
pending_barrier=0
explicit_await=0

parse_file() {
  local file=$1 line n=0 words
  [ -r "$file" ] || die "$file: cannot read"
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line="${line%%#*}"
    read -ra words <<<"$line" || true
    [ ${#words[@]} -eq 0 ] && continue
    case "${words[0]}" in
      name)
        if [ ${#words[@]} -ne 2 ] || ! [[ "${words[1]}" =~ ^[a-z0-9][a-z0-9-]{0,15}$ ]]; then die "$file:$n: name NAME ([a-z0-9-], at most 16)"; fi
        topo_name=${words[1]} ;;
      link)
        case ${#words[@]} in
          2) topo_link=${words[1]} ;;
          3) link[${words[1]}]=${words[2]} ;;
          *) die "$file:$n: link RATE | link HOST RATE" ;;
        esac ;;
      loss)
        if [ ${#words[@]} -ne 3 ] || ! [[ "${words[2]}" =~ ^([0-9]{1,2})%$ ]]; then die "$file:$n: loss HOST P% (P an integer below 100)"; fi
        loss[${words[1]}]=${BASH_REMATCH[1]} ;;
      timeout)
        if [ ${#words[@]} -ne 2 ] || ! [[ "${words[1]}" =~ ^[0-9]+$ ]]; then die "$file:$n: timeout SECONDS"; fi
        topo_timeout=${words[1]} ;;
      metrics)
        if [ ${#words[@]} -ne 2 ] || ! [[ "${words[1]}" =~ ^([0-9]+|off)$ ]]; then die "$file:$n: metrics PORT|off"; fi
        topo_metrics=${words[1]} ;;
      await)
        [ ${#words[@]} -ge 2 ] || die "$file:$n: await HOST..."
        explicit_await=1
        local h; for h in "${words[@]:1}"; do awaited[$h]=1; done ;;
      host)
        [ ${#words[@]} -ge 3 ] || die "$file:$n: host NAME ROLE OPTIONS..."
        local h=${words[1]}
        [[ "$h" =~ ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,15}$ ]] || die "$file:$n: host name '$h' ([A-Za-z0-9_-], at most 16)"
        [ -z "${role[$h]:-}" ] || die "$file:$n: host $h defined twice"
        [ ${#hosts[@]} -lt 250 ] || die "$file:$n: at most 250 hosts"
        hosts+=("$h"); role[$h]=${words[2]}; opts[$h]="${words[*]:3}"
        [ "$pending_barrier" = 1 ] && barrier_before[$h]=1
        pending_barrier=0 ;;
      barrier)
        [ ${#words[@]} -eq 1 ] || die "$file:$n: barrier (no arguments)"
        pending_barrier=1 ;;
      *) die "$file:$n: unknown directive '${words[0]}'" ;;
    esac
  done <"$file"
  [ -n "$topo_name" ] || die "$file: no 'name' line"
  [ ${#hosts[@]} -gt 0 ] || die "$file: no hosts"
  local h
  for h in "${!link[@]}" "${!loss[@]}" "${!awaited[@]}"; do [ -n "${role[$h]:-}" ] || die "$file: no host named $h"; done
  if [ $explicit_await = 0 ]; then for h in "${hosts[@]}"; do [ "${role[$h]}" = sink ] && awaited[$h]=1; done; fi
  [ ${#awaited[@]} -gt 0 ] || die "$file: nothing to wait for (no sink and no 'await' line)"
}

addr_of() { local i; for i in "${!hosts[@]}"; do [ "${hosts[$i]}" = "$1" ] && { echo "$subnet.$((i + 1))"; return; }; done; die "no host named $1"; }
ns_of() { echo "sc-$run_id-$1"; }

declare -A sets=()
# Expands the placeholders of one option word for host $1.
expand() {
  local host=$1 word=$2 out="" key
  while [[ "$word" =~ ^([^{]*)\{([^}]*)\}(.*)$ ]]; do
    out+=${BASH_REMATCH[1]}; key=${BASH_REMATCH[2]}; word=${BASH_REMATCH[3]}
    case "$key" in
      addr) out+=$(addr_of "$host") ;;
      addr:*) out+=$(addr_of "${key#addr:}") ;;
      dir) out+="$run_dir/$host/data" ;;
      dir:*) addr_of "${key#dir:}" >/dev/null; out+="$run_dir/${key#dir:}/data" ;;
      run) out+=$run_dir ;;
      *) [ -n "${sets[$key]+x}" ] || die "host $host: no value for {$key} (give --set $key=VALUE)"; out+=${sets[$key]} ;;
    esac
  done
  printf '%s' "$out$word"
}

# ---------- state and teardown ----------
# $state_root/RUNID/{name,owner,dir}: owner is the pid of `run`, or "up" for a run left running.
teardown_run() {
  local id=$1 state="$state_root/$1" pg ns pids=() waited
  for pg in "$state"/pgid.*; do
    [ -f "$pg" ] || continue
    kill -TERM -- "-$(cat "$pg")" 2>/dev/null || true
  done
  # Give nodes 5 s to end cleanly (a source removes its views), then SIGKILL what is left in the namespaces.
  for waited in $(seq 50); do
    pids=()
    for ns in $(ip netns list | awk '{print $1}' | grep "^sc-$id-" || true); do mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$ns" 2>/dev/null); done
    [ ${#pids[@]} -eq 0 ] && break
    if [ "$waited" = 50 ]; then kill -KILL "${pids[@]}" 2>/dev/null || true; fi
    sleep 0.1
  done
  for ns in $(ip netns list | awk '{print $1}' | grep "^sc-$id-" || true); do
    for pg in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pg" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$state"
}

teardown_name() {
  local want=$1 state id
  for state in "$state_root"/*/; do
    [ -d "$state" ] || continue
    id=$(basename "$state")
    [ "$id" = "$want" ] || [ "$(cat "$state/name" 2>/dev/null)" = "$want" ] || continue
    teardown_run "$id"
  done
}

# Runs of this topology name whose owner is gone (a crashed or killed `run`) or that `up` left behind.
clean_stale() {
  local state owner
  for state in "$state_root"/*/; do
    [ -d "$state" ] || continue
    [ "$(cat "$state/name" 2>/dev/null)" = "$topo_name" ] || continue
    owner=$(cat "$state/owner" 2>/dev/null || echo gone)
    if [ "$owner" = up ] || ! kill -0 "$owner" 2>/dev/null; then
      echo "topology: tearing down stale run $(basename "$state")" >&2
      teardown_run "$(basename "$state")"
    fi
  done
}

# ---------- namespaces ----------
build_network() {
  local br i h ns rate
  br=$(ns_of br)
  ip netns add "$br"
  ip -n "$br" link set lo up
  # mcast_snooping 0: the bridge floods multicast like an unmanaged switch (snooping left fresh groups unanswered).
  ip -n "$br" link add br0 type bridge mcast_snooping 0
  ip -n "$br" addr add "$bridge_addr/24" brd + dev br0
  ip -n "$br" link set br0 up
  for i in "${!hosts[@]}"; do
    h=${hosts[$i]}; ns=$(ns_of "$h")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$br" link add "vr$i" type veth peer name eth0 netns "$ns"
    ip -n "$br" link set "vr$i" master br0 up
    # brd +: without a broadcast address a receiver's broadcast went to 0.0.0.0 (notes).
    ip -n "$ns" addr add "$subnet.$((i + 1))/24" brd + dev eth0
    ip -n "$ns" link set eth0 multicast on up
    ip -n "$ns" route add 224.0.0.0/4 dev eth0
    rate=${link[$h]:-$topo_link}
    if [ "$rate" != off ]; then
      # Both directions: the host's sends (eth0) and what the bridge sends to it (its port). No netem on this kernel.
      tc -n "$ns" qdisc replace dev eth0 root tbf rate "$rate" burst 64kb latency 50ms
      tc -n "$br" qdisc replace dev "vr$i" root tbf rate "$rate" burst 64kb latency 50ms
    fi
    if [ -n "${loss[$h]:-}" ]; then
      command -v nft >/dev/null 2>&1 || apt-get install -y -q nftables >/dev/null 2>&1 || die "nft (nftables) is required for 'loss'"
      ip netns exec "$ns" nft -f - <<EOF
table inet loss {
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto udp numgen random mod 100 < ${loss[$h]} counter drop
  }
}
EOF
    fi
  done
}

# ---------- nodes ----------
declare -A metrics_url=()
now_ns() { date +%s%N; }

declare -A listen_of=()

# Starts host $1's node in its namespace (in the background); ready_node waits until it can be used.
launch_node() {
  local h=$1 ns nd word words=() args=() listen=""
  ns=$(ns_of "$h"); nd="$run_dir/$h"
  mkdir -p "$nd"
  read -ra words <<<"${opts[$h]}" || true
  for word in "${words[@]}"; do args+=("$(expand "$h" "$word")"); done
  if [ "$topo_metrics" != off ] && [[ " ${opts[$h]} " != *" --metrics "* ]]; then
    args+=(--metrics "$(addr_of "$h"):$topo_metrics")
  fi
  # The node's final counters when it ends (a sink can finish between two scrapes): read by metric_sum.
  [[ " ${args[*]} " == *" --metrics "* ]] && args+=(--metrics-file "$nd/metrics.final")
  local prev=""
  for word in "${args[@]}"; do
    [ "$prev" = --listen ] && listen=$word
    [ "$prev" = --metrics ] && metrics_url[$h]="http://$word/metrics"
    prev=$word
  done
  listen_of[$h]=$listen
  printf '%s\n' "${bin[*]} ${role[$h]} ${args[*]}" >"$nd/command"
  now_ns >"$nd/start"
  (
    rc=0
    # setsid: the node leads its own process group (pgid file), so teardown ends it and its children together.
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$state/pgid.$h" \
      ip netns exec "$ns" "${bin[@]}" "${role[$h]}" "${args[@]}" >"$nd/stdout" 2>"$nd/stderr" </dev/null || rc=$?
    now_ns >"$nd/end"
    echo "$rc" >"$nd/rc.tmp" && mv "$nd/rc.tmp" "$nd/rc"
    # Off the script's own output: `up` returns while nodes run, and its caller's pipe must not wait for them.
  ) </dev/null >/dev/null 2>&1 &
}

ready_node() {
  local h=$1 ns nd listen=${listen_of[$1]}
  ns=$(ns_of "$h"); nd="$run_dir/$h"
  if [ -n "$listen" ]; then
    local port=${listen##*:} deadline=$((SECONDS + 60))
    until [ -n "$(ip netns exec "$ns" ss -Hltn "sport = :$port" 2>/dev/null)" ]; do
      [ -f "$nd/rc" ] && die "host $h exited (code $(cat "$nd/rc")) before listening on $listen: $(tail -1 "$nd/stderr" 2>/dev/null)"
      [ $SECONDS -lt $deadline ] || die "host $h did not listen on $listen within 60 s"
      sleep 0.1
    done
  fi
  # Ready means its metrics answer too (a `status` right after `up` reads every node), unless it already ended.
  if [ -n "${metrics_url[$h]:-}" ]; then
    local until=$((SECONDS + 60))
    until ip netns exec "$(ns_of br)" curl -sf --max-time 1 -o /dev/null "${metrics_url[$h]}" 2>/dev/null || [ -f "$nd/rc" ]; do
      [ $SECONDS -lt $until ] || die "host $h did not serve ${metrics_url[$h]} within 60 s"
      sleep 0.1
    done
  fi
}

# Hosts in file order. A host that listens (--listen) is ready before the next starts (later hosts connect to it);
# a run of hosts that do not listen (sinks) starts together and is waited for together, so N sinks do not
# start N process start-ups apart (what a fan-out's time to the last sink would otherwise measure).
start_hosts() {
  local h p together=()
  for h in "${hosts[@]}"; do
    if [ -n "${barrier_before[$h]:-}" ]; then
      for p in "${together[@]}"; do ready_node "$p"; done
      together=()
    fi
    if [[ " ${opts[$h]} " == *" --listen "* ]]; then
      for p in "${together[@]}"; do ready_node "$p"; done
      together=()
      launch_node "$h"; ready_node "$h"
    else
      launch_node "$h"; together+=("$h")
    fi
  done
  for p in "${together[@]}"; do ready_node "$p"; done
}

scrape() {
  local h=$1 nd="$run_dir/$1"
  [ -n "${metrics_url[$h]:-}" ] || return 0
  if ip netns exec "$(ns_of br)" curl -sf --max-time 2 "${metrics_url[$h]}" -o "$nd/metrics.tmp" 2>/dev/null; then
    mv "$nd/metrics.tmp" "$nd/metrics"
  fi
}

# Sum of a metric's samples (all label sets) in a node's last scrape.
metric_sum() {
  local file="$run_dir/$1/metrics"
  [ -f "$run_dir/$1/metrics.final" ] && file="$run_dir/$1/metrics.final"
  [ -f "$file" ] || { echo null; return; }
  awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $NF; n++ } END { if (n) printf "%d\n", s; else print 0 }' "$file"
}

link_bytes() { ip -n "$(ns_of "$1")" -s -j link show eth0 2>/dev/null | jq ".[0].stats64.$2.bytes" 2>/dev/null || echo null; }

stop_node() {
  local h=$1 nd="$run_dir/$1" pg waited
  [ -f "$nd/rc" ] && return 0
  scrape "$h"
  pg=$(cat "$state/pgid.$h" 2>/dev/null || true)
  if [ -n "$pg" ]; then kill -TERM -- "-$pg" 2>/dev/null || true; fi
  for waited in $(seq 50); do [ -f "$nd/rc" ] && break; sleep 0.1; done
  if [ ! -f "$nd/rc" ] && [ -n "$pg" ]; then kill -KILL -- "-$pg" 2>/dev/null || true; fi
  echo 1 >"$nd/stopped"
}

# ---------- run ----------
bin=()
run_dir=""
keep=0
json_out=""
timeout_arg=""
run_id=""
state=""

prepare() {
  local file=$1; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --json) json_out=$2; shift 2 ;;
      --dir) run_dir=$2; shift 2 ;;
      --timeout) timeout_arg=$2; shift 2 ;;
      --set) [[ "$2" == *=* ]] || die "--set KEY=VALUE"; sets[${2%%=*}]=${2#*=}; shift 2 ;;
      --bin) read -ra bin <<<"$2"; shift 2 ;;
      --keep) keep=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
  for tool in ip tc curl jq ss; do command -v "$tool" >/dev/null 2>&1 || die "$tool is required"; done
  parse_file "$file"
  [ -n "$timeout_arg" ] && topo_timeout=$timeout_arg
  [[ "$topo_timeout" =~ ^[0-9]+$ ]] || die "--timeout SECONDS"
  [ ${#bin[@]} -gt 0 ] || bin=("$root/streamclone")
  mkdir -p "$state_root"
  clean_stale
  run_id="$topo_name-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  state="$state_root/$run_id"
  mkdir -m 0700 "$state"
  echo "$topo_name" >"$state/name"
  if [ -z "$run_dir" ]; then run_dir=$(mktemp -d "/tmp/topology-$run_id.XXXXXX"); else keep=1; mkdir -p "$run_dir"; fi
  run_dir=$(cd "$run_dir" && pwd)
  echo "$run_dir" >"$state/dir"
}

# nodes.tsv in the run directory: NAME ROLE ADDR METRICS_URL (what `status --topology-run` reads).
write_nodes() {
  local h
  for h in "${hosts[@]}"; do
    printf '%s\t%s\t%s\t%s\n' "$h" "${role[$h]}" "$(addr_of "$h")" "${metrics_url[$h]:--}"
  done >"$run_dir/nodes.tsv"
  ns_of br >"$run_dir/netns"
  echo "$run_id" >"$run_dir/run-id"
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$run_id" ] && teardown_run "$run_id"
  [ -n "$run_dir" ] && [ "$keep" = 0 ] && rm -rf "$run_dir"
  exit "$rc"
}

cmd_up() {
  prepare "$@"
  echo up >"$state/owner"
  trap 'on_exit' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  keep=1
  build_network
  start_hosts
  write_nodes
  trap - EXIT INT TERM
  echo "topology: run $run_id up, dir $run_dir (perf/topology.sh down $topo_name)"
}

cmd_run() {
  prepare "$@"
  echo $$ >"$state/owner"
  trap 'on_exit' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  build_network
  local h t0 failed="" next_scrape=0 deadline
  t0=$(now_ns)
  start_hosts
  write_nodes
  deadline=$((SECONDS + topo_timeout))
  while :; do
    local pending=0
    for h in "${hosts[@]}"; do
      if [ -f "$run_dir/$h/rc" ]; then
        [ "$(cat "$run_dir/$h/rc")" = 0 ] || { failed="$h exited with code $(cat "$run_dir/$h/rc"): $(tail -1 "$run_dir/$h/stderr" 2>/dev/null)"; break 2; }
      elif [ -n "${awaited[$h]:-}" ]; then
        pending=$((pending + 1))
      fi
    done
    [ $pending = 0 ] && break
    [ $SECONDS -lt $deadline ] || { failed="timeout: $pending awaited host(s) still running after $topo_timeout s"; break; }
    if [ $SECONDS -ge $next_scrape ]; then
      for h in "${hosts[@]}"; do [ -f "$run_dir/$h/rc" ] || scrape "$h"; done
      next_scrape=$((SECONDS + 1))
    fi
    sleep 0.2
  done
  local seconds
  seconds=$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  # Stop in reverse order: children before the nodes that feed them, so a stopped feeder fails no child.
  local i
  for ((i = ${#hosts[@]} - 1; i >= 0; i--)); do stop_node "${hosts[$i]}"; done
  report "$seconds" "$failed"
  [ -z "$failed" ] || { echo "topology: run $run_id failed: $failed" >&2; exit 1; }
}

report() {
  local seconds=$1 failed=$2 h nd rows=()
  for h in "${hosts[@]}"; do
    nd="$run_dir/$h"
    local start end rc secs stopped=false
    start=$(cat "$nd/start" 2>/dev/null || echo 0); end=$(cat "$nd/end" 2>/dev/null || echo 0); rc=$(cat "$nd/rc" 2>/dev/null || echo null)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { if (a > 0 && b > 0) printf "%.3f", (b - a) / 1e9; else print "null" }')
    [ -f "$nd/stopped" ] && stopped=true
    rows+=("$(jq -nc --arg name "$h" --arg role "${role[$h]}" --arg addr "$(addr_of "$h")" \
      --argjson in "$(link_bytes "$h" rx)" --argjson out "$(link_bytes "$h" tx)" \
      --argjson nacks "$(metric_sum "$h" streamclone_multicast_nacks_total)" --argjson repairs "$(metric_sum "$h" streamclone_multicast_repairs_total)" \
      --argjson secs "$secs" --argjson rc "$rc" --argjson stopped "$stopped" --argjson awaited "$([ -n "${awaited[$h]:-}" ] && echo true || echo false)" \
      '{name: $name, role: $role, addr: $addr, bytes_in: $in, bytes_out: $out, nacks: $nacks, repairs: $repairs,
        seconds: $secs, exit_code: $rc, stopped_by_script: $stopped, awaited: $awaited}')")
  done
  local json
  json=$(printf '%s\n' "${rows[@]}" | jq -sc --arg name "$topo_name" --arg id "$run_id" --arg dir "$run_dir" --arg failed "$failed" --argjson seconds "$seconds" \
    '{name: $name, run_id: $id, run_dir: $dir, ok: ($failed == ""), error: (if $failed == "" then null else $failed end), seconds: $seconds, nodes: .}')
  [ -n "$json_out" ] && printf '%s\n' "$json" >"$json_out"
  {
    printf '%-10s %-7s %-11s %14s %14s %7s %8s %9s %5s\n' node role addr bytes_in bytes_out nacks repairs seconds exit
    printf '%s\n' "$json" | jq -r '.nodes[] | [.name, .role, .addr, (.bytes_in // "-"), (.bytes_out // "-"), (.nacks // "-"), (.repairs // "-"),
      (.seconds // "-"), ((.exit_code // "-" | tostring) + (if .stopped_by_script then " (stopped)" else "" end))] | @tsv' |
      while IFS=$'\t' read -r n r a i o k p s e; do printf '%-10s %-7s %-11s %14s %14s %7s %8s %9s %5s\n' "$n" "$r" "$a" "$i" "$o" "$k" "$p" "$s" "$e"; done
    printf 'run %s: %s in %s s\n' "$run_id" "$([ -z "$failed" ] && echo ok || echo "FAILED ($failed)")" "$seconds"
  } >&2
}

cmd_status() {
  local id=${1:-}; [ -n "$id" ] || usage; shift
  local dir; dir=$(cat "$state_root/$id/dir" 2>/dev/null) || die "no run $id"
  local sc_bin; read -ra sc_bin <<<"${STREAMCLONE_BIN:-$root/streamclone}"
  exec ip netns exec "sc-$id-br" "${sc_bin[@]}" status --topology-run "$dir" "$@"
}

[ $# -ge 1 ] || usage
case "$1" in
  run) shift; [ $# -ge 1 ] || usage; cmd_run "$@" ;;
  up) shift; [ $# -ge 1 ] || usage; cmd_up "$@" ;;
  down) [ $# -eq 2 ] || usage; [ "$(id -u)" = 0 ] || die "needs root"; teardown_name "$2" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
