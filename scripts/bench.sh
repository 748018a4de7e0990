#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md.
#
# Builds the release binaries, then for each store (memory, embedded on a temp dir) and each
# key count (1, 1000) starts the shopping-cart user function and the proxy on free ports,
# drives the cart with `cloudstate-loadgen cart` (closed loop, 64 clients), and stops both.
# Also measures the raw loopback gRPC echo baseline (echo-server process + echo client).
# With REPEAT=N every scenario runs N times, the rounds interleaved so that noise from other
# work on the machine spreads over all scenarios; the table shows the run with the median
# throughput and the range over all runs. Prints a markdown table and the machine; keeps the
# JSON results and logs in $OUT.
#
# Environment:
#   DURATION=10s  WARMUP=2s  CONCURRENCY=64  KEYS="1 1000"  STORES="memory embedded"  REPEAT=1
#   ECHO=1 (0 skips the echo baseline)  ECHO_CONNECTIONS="64 1" (one echo run per value)
#   CART=1 (0 skips the cart scenarios)
#   LOADGEN_ARGS="" (extra flags for every loadgen run, e.g. "--connections 1")
#   SKIP_BUILD=1 (use the binaries already in target/release)
#   OUT=target/bench/<timestamp> (where results and logs go)
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-64}
KEYS=${KEYS:-"1 1000"}
STORES=${STORES:-"memory embedded"}
ECHO=${ECHO:-1}
ECHO_CONNECTIONS=${ECHO_CONNECTIONS:-"$CONCURRENCY 1"}
CART=${CART:-1}
REPEAT=${REPEAT:-1}
read -r -a LOADGEN_ARGS <<<"${LOADGEN_ARGS:-}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
OUT=${OUT:-$TARGET_DIR/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/cloudstate-bench.XXXXXX")

for tool in curl jq python3; do
  command -v "$tool" >/dev/null || { echo "bench.sh needs $tool" >&2; exit 1; }
done

# Processes started by this script, stopped on exit whatever happens.
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Stops one process: SIGTERM, then SIGKILL after 10 s.
stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Waits until a URL answers 200 (or a port accepts connections), at most 60 s.
wait_for() {
  local what=$1 pid=$2
  for _ in $(seq 600); do
    if [[ $what == http* ]]; then
      curl -fsS -o /dev/null "$what" 2>/dev/null && return 0
    elif (exec 3<>"/dev/tcp/127.0.0.1/$what") 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { log "process $pid exited while waiting for $what"; return 1; }
    sleep 0.1
  done
  log "timed out waiting for $what"
  return 1
}

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries"
  cargo build --release -p cloudstate-proxy -p shopping-cart -p cloudstate-loadgen
fi

ROWS=()
NOTES=()
FAILED=0

# Adds the table row of one scenario from the JSON results of its runs ($OUT/$name.<n>.json).
row() {
  local label=$1 name=$2 runs
  runs=$(find "$OUT" -maxdepth 1 -name "$name.*.json" -size +0 | sort)
  local count
  count=$(echo "$runs" | grep -c . || true)
  if [[ $count == 0 ]]; then
    ROWS+=("| $label | no result | | | | | | | |")
    FAILED=1
    return
  fi
  [[ $count == "$REPEAT" ]] || {
    NOTES+=("- $label: only $count of $REPEAT runs gave a result")
    FAILED=1
  }
  # shellcheck disable=SC2086
  ROWS+=("$(jq -s -r --arg title "$label" '
    def ms: if . < 1 then (. * 1000 | round / 1000) elif . < 10 then (. * 100 | round / 100)
            elif . < 100 then (. * 10 | round / 10) else round end | tostring;
    def cores: . * 100 | round / 100 | tostring;
    sort_by(.throughput_ops_s) as $runs
    | $runs[(($runs | length) - 1) / 2 | floor] as $m
    | ([$runs[].errors | to_entries[]] | group_by(.key)
       | map("\(.[0].key) \(map(.value) | add)") | join(", ")) as $errors
    | ($runs | map(select(.check != null))) as $checked
    | (if ($checked | length) == 0 then "n/a"
       elif ($checked | all(.check.passed)) then "pass (\($checked | length)/\($runs | length) runs)"
       else "FAIL (\($checked | map(select(.check.passed | not)) | length) runs)" end) as $check
    | (if $m.cpu == null then "" else
       ([$m.cpu.processes | to_entries[] | "\(.key) \(.value | cores)"]
        + ["other \($m.cpu.other | cores)"]) | join(", ") end) as $cpu
    | "| \($title) | \($m.throughput_ops_s | round) | \($runs[0].throughput_ops_s | round)–\($runs[-1].throughput_ops_s | round) | \($m.latency_ms.p50 | ms) | \($m.latency_ms.p99 | ms) | \($m.latency_ms.max | ms) | \(if $errors == "" then "0" else $errors end) | \($check) | \($cpu) |"
  ' $runs)")
}

# Notes warnings and errors the proxy logged once ready.
proxy_log_note() {
  local name=$1 log=$2 count
  count=$(sed -n '/ ready/,$p' "$log" | grep -cE ' (WARN|ERROR) ' || true)
  if [[ $count != 0 ]]; then
    NOTES+=("- $name: the proxy logged $count warnings/errors under load, first: \`$(sed -n '/ ready/,$p' "$log" | grep -m1 -E ' (WARN|ERROR) ' | cut -c1-200)\`")
  fi
}

# One echo baseline run: echo-server process + echo client.
run_echo() {
  local connections=$1 rep=$2 name="echo-$1conns" port
  port=$(free_port)
  log "$name run $rep: echo-server on $port"
  "$BIN/cloudstate-loadgen" echo-server --port "$port" >"$OUT/$name.$rep-server.log" 2>&1 &
  local server=$!
  PIDS+=("$server")
  local status=0
  if wait_for "$port" "$server"; then
    "$BIN/cloudstate-loadgen" echo --target "http://127.0.0.1:$port" \
      --concurrency "$CONCURRENCY" --connections "$connections" \
      --duration "$DURATION" --warmup "$WARMUP" --json \
      --watch-pid "echo-server=$server" "${LOADGEN_ARGS[@]}" >"$OUT/$name.$rep.json" 2>"$OUT/$name.$rep.txt" \
      || status=$?
    cat "$OUT/$name.$rep.txt" >&2
  else
    status=1
  fi
  [[ $status == 0 ]] || FAILED=1
  stop "$server"
}

# One cart run: shopping-cart user function + proxy + `cloudstate-loadgen cart`.
run_cart() {
  local store=$1 keys=$2 rep=$3 name="cart-$1-$2keys" uf_port proxy_port store_arg data=""
  uf_port=$(free_port)
  proxy_port=$(free_port)
  case $store in
    memory) store_arg=memory ;;
    embedded) data="$WORK/data-$name.$rep" store_arg="embedded:$WORK/data-$name.$rep" ;;
    *) log "unknown store $store"; return 1 ;;
  esac
  log "$name run $rep: shopping-cart on $uf_port, proxy on $proxy_port ($store_arg)"
  HOST=127.0.0.1 PORT=$uf_port "$BIN/shopping-cart" >"$OUT/$name.$rep-user-function.log" 2>&1 &
  local uf=$!
  PIDS+=("$uf")
  "$BIN/cloudstate-proxy" --http-interface 127.0.0.1 --http-port "$proxy_port" \
    --user-function-port "$uf_port" --store "$store_arg" >"$OUT/$name.$rep-proxy.log" 2>&1 &
  local proxy=$!
  PIDS+=("$proxy")
  local status=0
  if wait_for "http://127.0.0.1:$proxy_port/ready" "$proxy"; then
    "$BIN/cloudstate-loadgen" cart --target "http://127.0.0.1:$proxy_port" \
      --concurrency "$CONCURRENCY" --keys "$keys" --duration "$DURATION" --warmup "$WARMUP" \
      --json --watch-pid "proxy=$proxy" --watch-pid "user-function=$uf" "${LOADGEN_ARGS[@]}" \
      >"$OUT/$name.$rep.json" 2>"$OUT/$name.$rep.txt" || status=$?
    cat "$OUT/$name.$rep.txt" >&2
  else
    status=1
  fi
  [[ $status == 0 ]] || FAILED=1
  stop "$proxy"
  stop "$uf"
  [[ -z $data ]] || rm -rf "$data"
  proxy_log_note "$name run $rep" "$OUT/$name.$rep-proxy.log"
}

plural() { [[ $1 == 1 ]] && echo "$1 $2" || echo "$1 $2s"; }

for rep in $(seq "$REPEAT"); do
  if [[ $ECHO == 1 ]]; then
    for connections in $ECHO_CONNECTIONS; do
      run_echo "$connections" "$rep"
    done
  fi
  if [[ $CART == 1 ]]; then
    for store in $STORES; do
      for keys in $KEYS; do
        run_cart "$store" "$keys" "$rep"
      done
    done
  fi
done

if [[ $ECHO == 1 ]]; then
  for connections in $ECHO_CONNECTIONS; do
    row "echo baseline, $(plural "$connections" connection)" "echo-${connections}conns"
  done
fi
if [[ $CART == 1 ]]; then
  for store in $STORES; do
    for keys in $KEYS; do
      row "cart, $store store, $(plural "$keys" key)" "cart-$store-${keys}keys"
    done
  done
fi

{
  echo
  echo "Closed loop, $CONCURRENCY clients (one HTTP/2 connection each unless said otherwise)," \
    "$WARMUP warm-up, $DURATION measured, $(plural "$REPEAT" run) per scenario" \
    "(figures of the median run by throughput; range over all runs)."
  [[ ${#LOADGEN_ARGS[@]} == 0 ]] || echo "Extra loadgen flags: \`${LOADGEN_ARGS[*]}\`."
  echo
  echo "| scenario | ops/s | ops/s range | p50 ms | p99 ms | max ms | errors | check | cpu, cores (median run) |"
  echo "|---|---:|---:|---:|---:|---:|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  if [[ ${#NOTES[@]} != 0 ]]; then
    printf '%s\n' "${NOTES[@]}"
    echo
  fi
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)."
  echo "Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Source: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes in the tree'), binaries built $(date -u -r "$BIN/cloudstate-proxy" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?')."
  echo "Results and logs: $OUT"
} | tee "$OUT/table.md"

exit "$FAILED"
