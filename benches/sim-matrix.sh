#!/usr/bin/env bash
# Runs the engine and the bare echo side by side with `antaca sim`, each
# load RUNS times on a fresh store, and keeps the median run's JSON report
# (median by throughput; by p99 at a fixed rate).
#
#   cargo build --release
#   benches/sim-matrix.sh OUT_DIR [LOAD ...]
#
# A load is CxK (C connections, K in flight each, closed loop) or CxK@RATE
# (a fixed rate of RATE requests per second). Default loads: the table of
# BENCHMARKS.md. Environment: RUNS (3), DURATION (5 s), SERVE_ARGS (extra
# flags for `antaca serve`, e.g. --engine-batch-max 1), ECHO=0 to skip the
# echo, DURABLE_ECHO=1 to run the durable echo too (every request's size
# fdatasynced to a log before its answer: `sim --echo-server --echo-log`),
# BIN (target/release/antaca), SIM_BIN (the binary whose `sim` drives the
# loads; BIN by default: set it to compare two engines under one client),
# PORTFOLIO (fixtures/bench-portfolio.json).
# Prints one line per run and a summary of the medians; nothing else may run
# on the machine meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: benches/sim-matrix.sh OUT_DIR [LOAD ...]}
shift
loads=("$@")
[ ${#loads[@]} -gt 0 ] || loads=(1x1 4x1 16x1 64x1 16x4 64x4 16x16 16x16@10000)
bin=${BIN:-target/release/antaca}
sim_bin=${SIM_BIN:-$bin}
portfolio=${PORTFOLIO:-fixtures/bench-portfolio.json}
runs=${RUNS:-3}
duration=${DURATION:-5}
engine_addr=127.0.0.1:28583
echo_addr=127.0.0.1:28584
durable_addr=127.0.0.1:28585
mkdir -p "$out"
data=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2
  return 1
}

if [ "${ECHO:-1}" != 0 ]; then
  "$bin" sim --echo-server "$echo_addr" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$echo_addr"
fi
if [ "${DURABLE_ECHO:-0}" != 0 ]; then
  "$bin" sim --echo-server "$durable_addr" --echo-log "$data/echo.log" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$durable_addr"
fi

# median_of KEY FILE...: the report with the median KEY (throughput_per_s
# in a closed loop; p99_us at a fixed rate, where every run has the same
# throughput).
median_of() {
  python3 - "$@" <<'PY'
import json, sys
key = sys.argv[1]
runs = sorted(sys.argv[2:], key=lambda f: json.load(open(f))[key])
print(runs[len(runs) // 2])
PY
}

summary() {
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
rec = r.get("reconciliation") or {}
print(f'{sys.argv[1]:<28} {r["throughput_per_s"]:>9.0f}/s  p50 {r["p50_us"]/1000:.3f} ms  '
      f'p90 {r["p90_us"]/1000:.3f}  p99 {r["p99_us"]/1000:.3f}  p99.9 {r["p999_us"]/1000:.3f}  '
      f'max {r["max_us"]/1000:.3f}  errors {r["errors"]}')
PY
}

# echo_run LABEL ADDR REPORT: one protocol-only run of the current load
# against an echo server, its report in REPORT.
echo_run() {
  "$sim_bin" sim --iso "$2" --protocol-only --duration "$duration" \
    --connections "$connections" --inflight "$inflight" --rate "$rate" \
    --json "$3" >/dev/null 2>&1
  summary "$1 $name run $run" "$3"
}

for load in "${loads[@]}"; do
  shape=${load%@*}
  rate=0
  [ "$shape" != "$load" ] && rate=${load#*@}
  connections=${shape%x*}
  inflight=${shape#*x}
  name=${shape}
  [ "$rate" != 0 ] && name="${shape}-rate${rate}"
  engine_runs=()
  echo_runs=()
  durable_runs=()
  for run in $(seq "$runs"); do
    rm -rf "$data/store"
    # shellcheck disable=SC2086
    "$bin" serve --data "$data/store" --iso-listen "$engine_addr" \
      --http-listen 127.0.0.1:0 --secure-listen 127.0.0.1:0 \
      --portfolio "$portfolio" ${SERVE_ARGS:-} >"$data/serve.log" 2>&1 &
    serve=$!
    pids+=($serve)
    wait_port "$engine_addr"
    report="$out/rep-engine-$name-run$run.json"
    "$sim_bin" sim --iso "$engine_addr" --portfolio "$portfolio" --duration "$duration" \
      --connections "$connections" --inflight "$inflight" --rate "$rate" \
      --json "$report" >"$data/sim.log" 2>&1 || { cat "$data/sim.log" >&2; }
    kill -TERM "$serve"
    wait "$serve" || true
    engine_runs+=("$report")
    summary "engine $name run $run" "$report"
    if [ "${ECHO:-1}" != 0 ]; then
      echo_runs+=("$out/rep-echo-$name-run$run.json")
      echo_run echo "$echo_addr" "${echo_runs[-1]}"
    fi
    if [ "${DURABLE_ECHO:-0}" != 0 ]; then
      durable_runs+=("$out/rep-decho-$name-run$run.json")
      echo_run "durable echo" "$durable_addr" "${durable_runs[-1]}"
    fi
  done
  key=throughput_per_s
  [ "$rate" != 0 ] && key=p99_us
  cp "$(median_of "$key" "${engine_runs[@]}")" "$out/rep-engine-$name.json"
  if [ ${#echo_runs[@]} -gt 0 ]; then
    cp "$(median_of "$key" "${echo_runs[@]}")" "$out/rep-echo-$name.json"
  fi
  if [ ${#durable_runs[@]} -gt 0 ]; then
    cp "$(median_of "$key" "${durable_runs[@]}")" "$out/rep-decho-$name.json"
  fi
done

echo
echo "medians:"
for load in "${loads[@]}"; do
  shape=${load%@*}
  rate=0
  [ "$shape" != "$load" ] && rate=${load#*@}
  name=${shape}
  [ "$rate" != 0 ] && name="${shape}-rate${rate}"
  summary "engine $name" "$out/rep-engine-$name.json"
  if [ -f "$out/rep-echo-$name.json" ]; then summary "echo $name" "$out/rep-echo-$name.json"; fi
  if [ -f "$out/rep-decho-$name.json" ]; then summary "durable echo $name" "$out/rep-decho-$name.json"; fi
done
