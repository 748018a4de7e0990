#!/usr/bin/env bash
# A profile of the proxy under a fixed load: where its CPU goes per command.
#
# Starts the Rust shopping cart and the proxy (memory store) with the proxy under a profiler,
# then drives the cart with cloudstate-loadgen in an open loop at a fixed rate, so that every
# profile counts the same number of commands:
#   TOOL=callgrind  (default) valgrind's callgrind: instruction counts, exact and stable even on a
#                   busy machine (the proxy runs ~50x slower under it, so keep RATE low). The
#                   counters are zeroed when the load starts and dumped when it ends, so the
#                   profile holds the commands and nothing of the start-up.
#   TOOL=perf       perf record (cpu-clock samples with call graphs) of the running proxy for
#                   the load's duration; needs perf and a kernel that lets it sample.
# Prints the instructions per command (callgrind) and the hottest functions, by their own
# instructions and inclusive (scripts/callgrind-top.py), and keeps the raw profile in $OUT
# (kcachegrind reads callgrind.out.*; perf report reads perf.data). Profile release binaries:
# a debug build spends its time in code that release inlines away.
#
# Environment:
#   TOOL=callgrind  PROTOCOL=grpc (or http)  RATE=100 (commands/s)  DURATION=20s
#   CONCURRENCY=16  KEYS=1000  BIN=target/release (proxy, shopping-cart, cloudstate-loadgen)
#   PROXY_ARGS=""   extra proxy flags      OUT=target/profile/<timestamp>
# Build the binaries first: cargo build --release -p cloudstate-proxy -p shopping-cart
#   -p cloudstate-loadgen (release builds keep line tables, so functions have names).
set -euo pipefail

TOOL=${TOOL:-callgrind}
PROTOCOL=${PROTOCOL:-grpc}
RATE=${RATE:-100}
DURATION=${DURATION:-20s}
CONCURRENCY=${CONCURRENCY:-16}
KEYS=${KEYS:-1000}
read -r -a PROXY_ARGS <<<"${PROXY_ARGS:-}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET_DIR/release}
OUT=${OUT:-$TARGET_DIR/profile/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

case $TOOL in
  callgrind) command -v valgrind >/dev/null || { echo "TOOL=callgrind needs valgrind" >&2; exit 1; } ;;
  perf) command -v perf >/dev/null || { echo "TOOL=perf needs perf" >&2; exit 1; } ;;
  *) echo "TOOL is callgrind or perf, not $TOOL" >&2; exit 1 ;;
esac
for binary in cloudstate-proxy shopping-cart cloudstate-loadgen; do
  [[ -x $BIN/$binary ]] || { echo "no $BIN/$binary: build it first (see the header)" >&2; exit 1; }
done

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "profile-proxy: $*" >&2; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

uf_port=$(free_port)
proxy_port=$(free_port)
HOST=127.0.0.1 PORT=$uf_port "$BIN/shopping-cart" >"$OUT/user-function.log" 2>&1 &
uf=$!
PIDS+=("$uf")
proxy_command=("$BIN/cloudstate-proxy" --http-interface 127.0.0.1 --http-port "$proxy_port"
  --user-function-port "$uf_port" --store memory "${PROXY_ARGS[@]}")
if [[ $TOOL == callgrind ]]; then
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "${proxy_command[@]}" >"$OUT/proxy.log" 2>&1 &
else
  "${proxy_command[@]}" >"$OUT/proxy.log" 2>&1 &
fi
proxy=$!
PIDS+=("$proxy")

log "waiting for the proxy on $proxy_port (under $TOOL)"
for _ in $(seq 3000); do
  curl -fsS -o /dev/null "http://127.0.0.1:$proxy_port/ready" 2>/dev/null && break
  kill -0 "$proxy" 2>/dev/null || { log "the proxy exited: $OUT/proxy.log"; exit 1; }
  sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$proxy_port/ready" || { log "the proxy did not get ready"; exit 1; }

# Every command of the profile is one of the load's: no warm-up, no check afterwards.
load=("$BIN/cloudstate-loadgen" cart --protocol "$PROTOCOL" --target "http://127.0.0.1:$proxy_port"
  --concurrency "$CONCURRENCY" --keys "$KEYS" --rate "$RATE" --duration "$DURATION" --warmup 0s
  --no-check --json --watch-pid "proxy=$proxy" --watch-pid "user-function=$uf")

if [[ $TOOL == callgrind ]]; then
  callgrind_control --zero "$proxy" >/dev/null
  log "load: $RATE commands/s for $DURATION ($PROTOCOL)"
  "${load[@]}" >"$OUT/load.json" 2>"$OUT/load.txt" || { cat "$OUT/load.txt" >&2; exit 1; }
  callgrind_control --dump=load "$proxy" >/dev/null
  # The dump is written next to the output file, numbered.
  dump=$(ls -t "$OUT"/callgrind.out.* | head -1)
  sent=$(jq '.ops + ([.errors[]] | add // 0)' "$OUT/load.json")
  "$ROOT/scripts/callgrind-top.py" --top 25 --per "$sent" "$dump" >"$OUT/top.txt"
  echo
  echo "Proxy under callgrind, $PROTOCOL cart AddItem at $RATE/s for $DURATION ($sent commands answered or failed):"
  echo
  cat "$OUT/top.txt"
  echo
  echo "Raw profile: $dump (kcachegrind; callgrind_annotate shows inclusive costs for it)."
else
  log "load: $RATE commands/s for $DURATION ($PROTOCOL), perf recording the proxy"
  seconds=$(python3 -c "import re,sys; d='$DURATION'; m=re.fullmatch(r'(\d+(?:\.\d+)?)(ms|s|m)?', d); v=float(m.group(1)); print(v/1000 if m.group(2)=='ms' else v*60 if m.group(2)=='m' else v)")
  perf record -e cpu-clock -F 999 -g -o "$OUT/perf.data" -p "$proxy" -- sleep "$seconds" \
    >"$OUT/perf-record.log" 2>&1 &
  recorder=$!
  "${load[@]}" >"$OUT/load.json" 2>"$OUT/load.txt" || { cat "$OUT/load.txt" >&2; exit 1; }
  wait "$recorder" || { cat "$OUT/perf-record.log" >&2; exit 1; }
  perf report -i "$OUT/perf.data" --stdio --no-children --sort symbol 2>/dev/null >"$OUT/report.txt" || true
  echo
  echo "Proxy under perf, $PROTOCOL cart AddItem at $RATE/s for $DURATION:"
  jq -r '"- proxy CPU: \(.cpu.processes.proxy // "?") cores, \(if .cpu.processes.proxy then (.cpu.processes.proxy / .throughput_ops_s * 1e6 | round | tostring) else "?" end) µs per command"' "$OUT/load.json"
  echo "- hottest symbols (perf report, $OUT/report.txt):"
  echo
  grep -E "^ +[0-9.]+%" "$OUT/report.txt" | sed "s/ *- *- *$//" | cut -c1-160 | head -25
fi
