#!/usr/bin/env bash
# Memory per active entity, what comes back after passivation, and the time to /ready.
#
# Starts a shopping-cart user function (the Rust example, or USER_FUNCTION=node for the npm
# cloudstate 0.0.3 cart) and then the proxy with a short passivation timeout, and runs
# `cloudstate-loadgen entities`: ROUNDS rounds, each activating ENTITIES new carts (one AddItem
# each), reading the resident memory (RSS) of the proxy and the user function, then waiting
# until the proxy's active_entities gauge reads 0 and reading it again. Reports the bytes per
# active entity of each process (growth of the first round / ENTITIES) and the RSS after every
# round's passivation (ROUNDS x ENTITIES distinct keys in all, e.g. 10 x 100,000 = 1,000,000).
#
# Time to ready: the user function is up (its port accepts connections) before the proxy starts,
# so the proxy's "listening" to "ready" log lines span discovery (connect, the user function's
# answer), building the service model and starting the engine: an upper bound of the time from
# the user function answering discovery to /ready.
#
# Environment:
#   ENTITIES=100000  ROUNDS=1  CONCURRENCY=64  PASSIVATION_WAIT=5m
#   PASSIVATION=30s (the proxy's --passivation-timeout: longer than a round's activation takes,
#     or some entities passivate before the RSS is read and no bytes per entity are reported)
#   USER_FUNCTION=rust (or node)  STORE=memory (or embedded:<dir>, postgres://...)
#   BIN=target/release  OUT=target/bench/memory-<timestamp>
set -euo pipefail

ENTITIES=${ENTITIES:-100000}
ROUNDS=${ROUNDS:-1}
CONCURRENCY=${CONCURRENCY:-64}
PASSIVATION=${PASSIVATION:-30s}
PASSIVATION_WAIT=${PASSIVATION_WAIT:-5m}
USER_FUNCTION=${USER_FUNCTION:-rust}
STORE=${STORE:-memory}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET_DIR/release}
OUT=${OUT:-$TARGET_DIR/bench/memory-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
for binary in cloudstate-proxy shopping-cart cloudstate-loadgen; do
  [[ -x $BIN/$binary ]] || {
    echo "no $BIN/$binary: cargo build --release -p cloudstate-proxy -p shopping-cart -p cloudstate-loadgen" >&2
    exit 1
  }
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

log() { echo "bench-memory: $*" >&2; }
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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

uf_port=$(free_port)
proxy_port=$(free_port)
case $USER_FUNCTION in
  rust) HOST=127.0.0.1 PORT=$uf_port "$BIN/shopping-cart" >"$OUT/user-function.log" 2>&1 & ;;
  node)
    # shellcheck disable=SC1091
    . scripts/compat-env.sh
    [[ $CLOUDSTATE_COMPAT_READY == 1 ]] || eval "$(scripts/install-compat.sh)"
    HOST=127.0.0.1 PORT=$uf_port node "$CLOUDSTATE_COMPAT_NODE_CART" >"$OUT/user-function.log" 2>&1 &
    ;;
  *) log "USER_FUNCTION is rust or node, not $USER_FUNCTION"; exit 1 ;;
esac
uf=$!
PIDS+=("$uf")
wait_for "$uf_port" "$uf"

"$BIN/cloudstate-proxy" --http-interface 127.0.0.1 --http-port "$proxy_port" \
  --user-function-port "$uf_port" --store "$STORE" --passivation-timeout "$PASSIVATION" \
  >"$OUT/proxy.log" 2>&1 &
proxy=$!
PIDS+=("$proxy")
wait_for "http://127.0.0.1:$proxy_port/ready" "$proxy"

# Milliseconds between the proxy's first log line matching $1 and its first matching $2.
log_gap_ms() {
  python3 - "$OUT/proxy.log" "$1" "$2" <<'EOF'
import datetime, re, sys
path, first, second = sys.argv[1:4]
def when(pattern):
    for line in open(path, encoding="utf-8", errors="replace"):
        stamp = re.match(r"(\S+Z)\s", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if stamp and re.search(pattern, line):
            text = re.sub(r"(\.\d{6})\d*Z$", r"\1+00:00", stamp.group(1)).replace("Z", "+00:00")
            return datetime.datetime.fromisoformat(text)
    return None
a, b = when(first), when(second)
print(f"{(b - a).total_seconds() * 1000:.1f}" if a and b else "?")
EOF
}
ready_ms=$(log_gap_ms "cloudstate-proxy listening" " ready$")

log "$ROUNDS round(s) of $ENTITIES carts, passivation after $PASSIVATION"
status=0
"$BIN/cloudstate-loadgen" entities --target "http://127.0.0.1:$proxy_port" \
  --entities "$ENTITIES" --rounds "$ROUNDS" --concurrency "$CONCURRENCY" \
  --passivation-wait "$PASSIVATION_WAIT" \
  --watch-pid "proxy=$proxy" --watch-pid "user-function=$uf" \
  >"$OUT/entities.json" 2>"$OUT/entities.txt" || status=$?
cat "$OUT/entities.txt" >&2

{
  echo
  echo "Memory, $USER_FUNCTION cart, store $STORE, $ROUNDS round(s) of $ENTITIES new carts (one AddItem each), passivation after $PASSIVATION:"
  echo
  if [[ -s $OUT/entities.json ]]; then
    jq -r '
      def mib: . / 1048576 * 10 | round / 10 | tostring + " MiB";
      "- bytes per active entity (RSS growth of round 1 / its entities): "
        + (.bytes_per_active_entity | to_entries | map("\(.key) \(.value | round)") | join(", ")
           | if . == "" then "not measured: some had passivated already (raise PASSIVATION)" else . end),
      "- RSS before: " + (.rss_before | to_entries | map("\(.key) \(.value | mib)") | join(", ")),
      (.rounds[] | "- round \(.round) (\(.active_entities // "?") active, activated in \(.activate_s * 10 | round / 10) s): RSS "
        + (.rss_active | to_entries | map("\(.key) \(.value | mib)") | join(", "))
        + "; after passivation (\(if .passivated_after_s then "all gone after \(.passivated_after_s * 10 | round / 10) s" else "NOT all passivated" end)): "
        + (.rss_passivated | to_entries | map("\(.key) \(.value | mib)") | join(", "))
        + (if (.errors | length) > 0 then "; errors \(.errors)" else "" end))
    ' "$OUT/entities.json"
  fi
  echo "- proxy start (listening) to ready, user function already up: $ready_ms ms"
  echo
  echo "Machine: $(nproc) CPUs, $(free -g | awk '/^Mem/ {print $2}') GiB. Results and logs: $OUT"
} | tee "$OUT/summary.md"
exit "$status"
