#!/usr/bin/env bash
# The same keyed workload on Restate and on the Cloudstate proxy, one system after the other on
# this machine, and the ratios between them.
#
# Systems (SYSTEMS="restate node rust"):
#   restate  Restate server (single node, npm @restatedev/restate-server) and a Counter virtual
#            object on Restate's TypeScript SDK (scripts/restate-counter):
#            POST /Counter/<key>/add with the body 1
#   node     the original npm cloudstate 0.0.3 shopping cart (compat/node-shopping-cart) behind
#            cloudstate-proxy on the embedded store: POST /cart/<key>/items/add (HTTP/JSON rule)
#   rust     the Rust SDK shopping cart (examples/shopping-cart) behind cloudstate-proxy on the
#            embedded store, same calls
# Cases (CASES="64:1000 64:1 1:1000", clients:keys): 64 clients on 64 HTTP/1.1 keep-alive
# connections over 1,000 keys, the same 64 on one key, and one client on one connection. Every
# call is a write acknowledged only once durable: Restate fsyncs its log (its defaults; the
# relevant settings are printed), the proxy's embedded store fsyncs every group commit. After
# each run every counter (cart) is read back and compared with the acknowledged calls
# (cloudstate-loadgen's check; a failed check fails the script).
#
# Every run starts fresh processes on free ports with fresh data directories (under the target
# directory: a real disk, /tmp may be a tmpfs where fsync is free). With REPEAT=N each case runs
# N times, the systems interleaved; the table shows the run with the median throughput.
#
# Environment:
#   DURATION=20s  WARMUP=2s  REPEAT=1  SYSTEMS="restate node rust"  CASES="64:1000 64:1 1:1000"
#   LOADGEN_ARGS=""   extra flags for every run (e.g. "--rate 2000" for an open loop)
#   SKIP_BUILD=1      use the binaries already in $BIN (default target/release)
#   BIN=<dir>         where cloudstate-proxy, shopping-cart and cloudstate-loadgen are
#   CLOUDSTATE_RESTATE_DIR=$HOME/.cache/cloudstate-restate   where Restate is installed (npm)
#   OUT=target/bench/restate-<timestamp>   results (JSON per run), logs and table.md
# Needs node + npm (the npm registry), curl, jq, python3; `node` needs scripts/install-compat.sh
# (run here if its install is missing).
set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-2s}
REPEAT=${REPEAT:-1}
SYSTEMS=${SYSTEMS:-"restate node rust"}
CASES=${CASES:-"64:1000 64:1 1:1000"}
read -r -a LOADGEN_ARGS <<<"${LOADGEN_ARGS:-}"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN:-$TARGET_DIR/release}
OUT=${OUT:-$TARGET_DIR/bench/restate-$(date +%Y%m%d-%H%M%S)}
RESTATE_DIR=${CLOUDSTATE_RESTATE_DIR:-$HOME/.cache/cloudstate-restate}
mkdir -p "$OUT" "$TARGET_DIR/tmp"
WORK=$(mktemp -d "$TARGET_DIR/tmp/bench-vs-restate.XXXXXX")

for tool in curl jq python3 node npm; do
  command -v "$tool" >/dev/null || { echo "bench-vs-restate.sh needs $tool" >&2; exit 1; }
done

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

log() { echo "bench-vs-restate: $*" >&2; }

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

# Waits until a URL answers 2xx (or a port accepts connections), at most 60 s.
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

# --- Installs --------------------------------------------------------------------------------------

# Restate server and SDK from the npm registry, keyed by the counter's files (npm ci from the
# committed lockfile; --ignore-scripts: the only install script is a telemetry ping, and the
# server binary comes in its platform package).
install_restate() {
  local key
  key=$(cat scripts/restate-counter/package.json scripts/restate-counter/package-lock.json \
    scripts/restate-counter/index.js | sha256sum | cut -c1-16)
  if [[ $(cat "$RESTATE_DIR/.installed-key" 2>/dev/null || true) != "$key" ]]; then
    log "installing Restate into $RESTATE_DIR (npm ci)"
    mkdir -p "$RESTATE_DIR"
    cp scripts/restate-counter/package.json scripts/restate-counter/package-lock.json \
      scripts/restate-counter/index.js "$RESTATE_DIR/"
    (cd "$RESTATE_DIR" && npm ci --ignore-scripts --no-audit --no-fund >"$OUT/npm-ci.log" 2>&1) \
      || { tail -20 "$OUT/npm-ci.log" >&2; exit 1; }
    echo "$key" >"$RESTATE_DIR/.installed-key"
  fi
  RESTATE_SERVER=$(find "$RESTATE_DIR/node_modules/@restatedev" -path '*/bin/restate-server' -type f | head -1)
  [[ -x $RESTATE_SERVER ]] || { log "no restate-server binary under $RESTATE_DIR/node_modules"; exit 1; }
  RESTATE_VERSION=$("$RESTATE_SERVER" --version | awk '{print $NF}')
  RESTATE_SDK_VERSION=$(node -p "require('$RESTATE_DIR/node_modules/@restatedev/restate-sdk/package.json').version")
}

[[ " $SYSTEMS " != *" restate "* ]] || install_restate
if [[ " $SYSTEMS " == *" node "* ]]; then
  # shellcheck disable=SC1091
  . scripts/compat-env.sh
  if [[ $CLOUDSTATE_COMPAT_READY != 1 ]]; then
    log "installing the compat user functions (scripts/install-compat.sh)"
    eval "$(scripts/install-compat.sh)"
  fi
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries"
  cargo build --release -p cloudstate-proxy -p shopping-cart -p cloudstate-loadgen
fi

# --- One run of each system ------------------------------------------------------------------------

# Runs the load generator's SCENARIO (restate-counter or cart) with CLIENTS clients on KEYS keys
# against TARGET, watching the given processes; the JSON result goes to $OUT/NAME.REP.json.
run_load() {
  local name=$1 rep=$2 target=$3 clients=$4 keys=$5 scenario=$6
  shift 6
  local status=0
  local protocol=()
  [[ $scenario != cart ]] || protocol=(--protocol http)
  "$BIN/cloudstate-loadgen" "$scenario" "${protocol[@]}" --target "$target" \
    --concurrency "$clients" --keys "$keys" --duration "$DURATION" --warmup "$WARMUP" --json \
    "$@" "${LOADGEN_ARGS[@]}" >"$OUT/$name.$rep.json" 2>"$OUT/$name.$rep.txt" || status=$?
  cat "$OUT/$name.$rep.txt" >&2
  return "$status"
}

run_restate() {
  local name=$1 rep=$2 clients=$3 keys=$4 data="$WORK/restate-$1.$2"
  local node_port admin_port ingress_port service_port status=0
  node_port=$(free_port); admin_port=$(free_port); ingress_port=$(free_port); service_port=$(free_port)
  log "$name run $rep: restate-server (ingress $ingress_port), counter service on $service_port"
  RESTATE_BASE_DIR=$data RESTATE_LISTEN_MODE=tcp RESTATE_DISABLE_TELEMETRY=true \
    RESTATE_BIND_ADDRESS=127.0.0.1:$node_port RESTATE_ADMIN__BIND_ADDRESS=127.0.0.1:$admin_port \
    RESTATE_INGRESS__BIND_ADDRESS=127.0.0.1:$ingress_port \
    "$RESTATE_SERVER" --no-logo >"$OUT/$name.$rep-restate.log" 2>&1 &
  local server=$!
  PIDS+=("$server")
  # The SDK logs every invocation at INFO; WARN keeps logging off the measured path, as the
  # proxy's default log level does.
  HOST=127.0.0.1 PORT=$service_port RESTATE_LOGGING=WARN node "$RESTATE_DIR/index.js" \
    >"$OUT/$name.$rep-service.log" 2>&1 &
  local service=$!
  PIDS+=("$service")
  if wait_for "http://127.0.0.1:$admin_port/health" "$server" && wait_for "$service_port" "$service" \
    && curl -fsS -o "$OUT/$name.$rep-deployment.txt" -X POST "http://127.0.0.1:$admin_port/deployments" \
      -H 'content-type: application/json' -d "{\"uri\": \"http://127.0.0.1:$service_port\"}"; then
    run_load "$name" "$rep" "http://127.0.0.1:$ingress_port" "$clients" "$keys" restate-counter \
      --watch-pid "restate=$server" --watch-pid "user-function=$service" || status=$?
  else
    status=1
  fi
  stop "$service"
  stop "$server"
  rm -rf "$data"
  return "$status"
}

run_proxy() {
  local name=$1 rep=$2 clients=$3 keys=$4 function=$5 data="$WORK/proxy-$1.$2"
  local uf_port proxy_port status=0
  uf_port=$(free_port); proxy_port=$(free_port)
  log "$name run $rep: $function cart on $uf_port, proxy on $proxy_port (embedded:$data)"
  case $function in
    node) HOST=127.0.0.1 PORT=$uf_port node "$CLOUDSTATE_COMPAT_NODE_CART" >"$OUT/$name.$rep-user-function.log" 2>&1 & ;;
    rust) HOST=127.0.0.1 PORT=$uf_port "$BIN/shopping-cart" >"$OUT/$name.$rep-user-function.log" 2>&1 & ;;
  esac
  local uf=$!
  PIDS+=("$uf")
  "$BIN/cloudstate-proxy" --http-interface 127.0.0.1 --http-port "$proxy_port" \
    --user-function-port "$uf_port" --store "embedded:$data" >"$OUT/$name.$rep-proxy.log" 2>&1 &
  local proxy=$!
  PIDS+=("$proxy")
  if wait_for "http://127.0.0.1:$proxy_port/ready" "$proxy"; then
    run_load "$name" "$rep" "http://127.0.0.1:$proxy_port" "$clients" "$keys" cart \
      --watch-pid "proxy=$proxy" --watch-pid "user-function=$uf" || status=$?
  else
    status=1
  fi
  stop "$proxy"
  stop "$uf"
  rm -rf "$data"
  return "$status"
}

FAILED=0
for rep in $(seq "$REPEAT"); do
  log "round $rep of $REPEAT (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for case in $CASES; do
    clients=${case%%:*} keys=${case##*:}
    for system in $SYSTEMS; do
      name="$system-${clients}c-${keys}k"
      case $system in
        restate) run_restate "$name" "$rep" "$clients" "$keys" || FAILED=1 ;;
        node | rust) run_proxy "$name" "$rep" "$clients" "$keys" "$system" || FAILED=1 ;;
        *) log "unknown system $system"; exit 2 ;;
      esac
    done
  done
done

# --- Table and ratios ------------------------------------------------------------------------------

# The JSON result of the run with the median throughput of scenario NAME, empty without one.
median_run() {
  local runs
  runs=$(find "$OUT" -maxdepth 1 -name "$1.*.json" -size +0 | sort)
  [[ -n $runs ]] || return 0
  # shellcheck disable=SC2086
  jq -s -c 'sort_by(.throughput_ops_s) | .[((length - 1) / 2 | floor)]' $runs
}

label() {
  case $1 in
    restate) echo "Restate $RESTATE_VERSION, TypeScript SDK $RESTATE_SDK_VERSION counter" ;;
    node) echo "proxy + npm cloudstate 0.0.3 cart (Node), embedded store" ;;
    rust) echo "proxy + Rust SDK cart, embedded store" ;;
  esac
}

case_label() {
  local clients=${1%%:*} keys=${1##*:}
  echo "$clients client$([[ $clients == 1 ]] || echo s) on as many connections, $keys key$([[ $keys == 1 ]] || echo s)"
}

{
  echo
  echo "HTTP/JSON, every call a durable write, $WARMUP warm-up, $DURATION measured, $REPEAT run(s) per case (median run by throughput)."
  [[ ${#LOADGEN_ARGS[@]} == 0 ]] || echo "Extra loadgen flags: \`${LOADGEN_ARGS[*]}\`."
  echo
  echo "| case | system | ops/s | p50 ms | p99 ms | max ms | errors | check | cpu, cores | cpu µs per call |"
  echo "|---|---|---:|---:|---:|---:|---|---|---|---|"
  for case in $CASES; do
    clients=${case%%:*} keys=${case##*:}
    for system in $SYSTEMS; do
      run=$(median_run "$system-${clients}c-${keys}k")
      if [[ -z $run ]]; then
        echo "| $(case_label "$case") | $(label "$system") | no result | | | | | | | |"
        continue
      fi
      jq -r --arg case "$(case_label "$case")" --arg system "$(label "$system")" '
        def cores: . * 100 | round / 100 | tostring;
        def ms: if . < 1 then (. * 1000 | round / 1000) elif . < 10 then (. * 100 | round / 100)
                elif . < 100 then (. * 10 | round / 10) else round end | tostring;
        .throughput_ops_s as $ops
        | "| \($case) | \($system) | \($ops | round) | \(.latency_ms.p50 | ms) | \(.latency_ms.p99 | ms) | \(.latency_ms.max | ms) | \(.errors | to_entries | map("\(.key) \(.value)") | join(", ") | if . == "" then "0" else . end) | \(if .check.passed then "pass" else "FAIL" end) | \(.cpu.processes // {} | to_entries | map("\(.key) \(.value | cores)") | join(", ")), other \(.cpu.other // 0 | cores) | \(.cpu.processes // {} | to_entries | map("\(.key) \(if $ops > 0 then .value / $ops * 1e6 | round else 0 end)") | join(", ")) |"
      ' <<<"$run"
    done
  done
  echo
  echo "Ratios against Restate (median runs): throughput (more is better), p99 (less is better)."
  echo
  for case in $CASES; do
    clients=${case%%:*} keys=${case##*:}
    peer=$(median_run "restate-${clients}c-${keys}k")
    [[ -n $peer ]] || continue
    for system in $SYSTEMS; do
      [[ $system != restate ]] || continue
      ours=$(median_run "$system-${clients}c-${keys}k")
      [[ -n $ours ]] || continue
      python3 - "$(case_label "$case")" "$(label "$system")" "$ours" "$peer" "$keys" "$clients" <<'EOF'
import json, sys
case, system, ours, peer, keys, clients = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5], sys.argv[6]
def ratio(a, b):
    return a / b if b else float("inf")
throughput = ratio(ours["throughput_ops_s"], peer["throughput_ops_s"])
p99 = ratio(ours["latency_ms"]["p99"], peer["latency_ms"]["p99"])
line = f"- {case}, {system}: {throughput:.1f}× Restate's throughput, {p99:.2f}× its p99"
if keys == "1000" and clients != "1":
    met = throughput >= 10 and p99 <= 0.1
    line += f" (target ≥ 10× and ≤ 0.1×: {'met' if met else 'not met'})"
print(line)
EOF
    done
  done
  echo
  if [[ " $SYSTEMS " == *" restate "* ]]; then
    echo "Restate's WAL settings (\`restate-server --dump-config\`, its defaults, every section):" \
      "$(RESTATE_BASE_DIR=$WORK/dump "$RESTATE_SERVER" --dump-config 2>/dev/null \
        | grep -E '^rocksdb-disable-wal(-fsync)? ' | sort -u | paste -sd';' -)."
  fi
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r), node $(node --version)."
  echo "Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Source: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes in the tree')."
  echo "Results and logs: $OUT"
} | tee "$OUT/table.md"

exit "$FAILED"
