#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md.
#
# Builds the release binaries, then runs every scenario with `cloudstate-loadgen` (closed
# loop, 64 clients; open loop with LOADGEN_ARGS="--rate N"), each against a fresh user function
# and proxy on free ports:
#   echo      the raw loopback gRPC echo baseline (echo-server process + echo client), with the
#             load generator's lean client and, in the same round, a minimal tonic client: the
#             lean client must reach at least 90% of the tonic client's calls/s (checked)
#   cart      shopping cart AddItem, memory and embedded stores (temp dir), 1 and 1,000 keys
#   http      the same cart over HTTP/JSON (memory store, 1,000 keys)
#   value     the test function's Counter value entity: Increment (checked) and Get, memory
#             and embedded stores, 1,000 keys
#   forward   Relay.Bounce with 0, 1, 2, 4, 8 forward hops, with 64 clients and with 1 (and
#             the marginal cost per hop), and Relay.ToCounter (action forwarding to the value
#             entity), memory store
#   crdt      the counters example's PNCounter increments (checked), 1,000 keys
#   presence  presence example: time from Connect/disconnect to the Monitor stream seeing it,
#             100 users (monitors sharing each user's connection, and on connections apart)
#   postgres  cart on a throw-away PostgreSQL cluster (fsync on), and pgbench one-row INSERT
#             transactions (64 clients) on the same cluster: the database's own limit
# With REPEAT=N every scenario runs N times, the rounds interleaved so that noise from other
# work on the machine spreads over all scenarios; the tables show the run with the median
# throughput and the range over all runs. Prints markdown tables and the machine; keeps the
# JSON results and logs in $OUT.
#
# Environment:
#   DURATION=10s  WARMUP=2s  CONCURRENCY=64  REPEAT=1
#   ECHO=1 CART=1 HTTP=1 VALUE=1 FORWARD=1 CRDT=1 PRESENCE=1 POSTGRES=1 (0 skips a group)
#   KEYS="1 1000"  STORES="memory embedded"   (cart)
#   ECHO_CONNECTIONS="64 1"                    (one echo run per value and client)
#   ECHO_CLIENTS="lean tonic"                  (the load generator's client, the tonic reference)
#   VALUE_STORES="memory embedded"  HOPS="0 1 2 4 8"  HOP_CLIENTS="$CONCURRENCY 1"
#   PRESENCE_USERS=100
#   PG_CLIENTS=$CONCURRENCY  PG_BIN=<dir of initdb, pg_ctl, createdb, psql, pgbench>
#   QUIET_CORES=0 QUIET_WAIT=600: before each round, wait up to QUIET_WAIT seconds for the
#     machine to have at most QUIET_CORES cores busy (sampled over 5 s; 0 = do not wait)
#   LOADGEN_ARGS="" (extra flags for every closed-loop run, e.g. "--connections 1")
#   SKIP_BUILD=1 (use the binaries already in target/release)
#   OUT=target/bench/<timestamp> (where results and logs go)
# The PostgreSQL cluster lives in a temporary directory under the target directory (a real
# disk: /tmp may be a tmpfs, where fsync is free); run as root, its server programs run as the
# `postgres` user (initdb refuses root). It is stopped and deleted on exit.
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONCURRENCY=${CONCURRENCY:-64}
KEYS=${KEYS:-"1 1000"}
STORES=${STORES:-"memory embedded"}
ECHO=${ECHO:-1}
ECHO_CONNECTIONS=${ECHO_CONNECTIONS:-"$CONCURRENCY 1"}
ECHO_CLIENTS=${ECHO_CLIENTS:-"lean tonic"}
CART=${CART:-1}
HTTP=${HTTP:-1}
VALUE=${VALUE:-1}
VALUE_STORES=${VALUE_STORES:-"memory embedded"}
FORWARD=${FORWARD:-1}
HOPS=${HOPS:-"0 1 2 4 8"}
HOP_CLIENTS=${HOP_CLIENTS:-"$CONCURRENCY 1"}
CRDT=${CRDT:-1}
PRESENCE=${PRESENCE:-1}
PRESENCE_USERS=${PRESENCE_USERS:-100}
POSTGRES=${POSTGRES:-1}
PG_CLIENTS=${PG_CLIENTS:-$CONCURRENCY}
REPEAT=${REPEAT:-1}
QUIET_CORES=${QUIET_CORES:-0}
QUIET_WAIT=${QUIET_WAIT:-600}
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
PG_DIR=""
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  [[ -z $PG_DIR ]] || pg_remove
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

# Cores busy on the whole machine over 5 s (while this script runs nothing: other people's work).
busy_cores() {
  local a b
  a=$(head -1 /proc/stat)
  sleep 5
  b=$(head -1 /proc/stat)
  python3 -c '
import sys
a, b = ([int(f) for f in line.split()[1:9]] for line in sys.argv[1:3])
d = [y - x for x, y in zip(a, b)]
total, idle = sum(d), d[3] + d[4]
print(f"{(total - idle) / total * int(sys.argv[3]):.2f}" if total else "0")' "$a" "$b" "$(nproc)"
}

# With QUIET_CORES set: waits (up to QUIET_WAIT s) until others leave the machine quiet.
wait_quiet() {
  [[ $QUIET_CORES != 0 ]] || return 0
  local waited=0 busy
  while true; do
    busy=$(busy_cores)
    if python3 -c "import sys; sys.exit(0 if $busy <= $QUIET_CORES else 1)"; then
      log "machine quiet: $busy cores busy (load average $(cut -d' ' -f1-3 /proc/loadavg))"
      return 0
    fi
    if ((waited >= QUIET_WAIT)); then
      log "machine still busy after ${waited}s ($busy cores), going on"
      NOTES+=("- a round started with $busy cores busy after waiting ${waited}s for quiet")
      return 0
    fi
    log "machine busy: $busy cores busy (load average $(cut -d' ' -f1-3 /proc/loadavg)), waiting"
    sleep 25
    waited=$((waited + 30))
  done
}

# --- PostgreSQL: a throw-away cluster, as crates/testutil/src/postgres.rs makes them -------------

pg_bin() {
  if [[ -n ${PG_BIN:-} ]]; then
    echo "$PG_BIN"
  elif command -v initdb >/dev/null; then
    dirname "$(readlink -f "$(command -v initdb)")"
  else
    find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1
  fi
}

# Runs a server program as the postgres user when this script runs as root.
as_pg() {
  if [[ $(id -u) == 0 ]]; then
    (cd "$PG_DIR" && runuser -u postgres -- "$@")
  else
    (cd "$PG_DIR" && "$@")
  fi
}

# A PostgreSQL client program on the cluster.
pg_client() {
  local program=$1
  shift
  PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres "$PG_BIN/$program" "$@"
}

pg_start() {
  PG_BIN=$(pg_bin)
  [[ -x $PG_BIN/initdb && -x $PG_BIN/pgbench ]] || {
    log "PostgreSQL (initdb, pg_ctl, pgbench) is not installed; install it or set POSTGRES=0"
    exit 1
  }
  PG_DIR=$(mktemp -d "$TARGET_DIR/bench-pg.XXXXXX")
  [[ $(id -u) != 0 ]] || chown postgres: "$PG_DIR"
  PG_PORT=$(free_port)
  log "PostgreSQL: initdb in $PG_DIR, port $PG_PORT"
  as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C \
    --no-sync --no-instructions >"$OUT/postgres-initdb.log" 2>&1
  cat >>"$PG_DIR/data/postgresql.conf" <<EOF

# scripts/bench.sh (as cloudstate-testutil)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 300
shared_buffers = 128MB
EOF
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start \
    >>"$OUT/postgres-initdb.log" 2>&1 || { cat "$PG_DIR/postgres.log" >&2; exit 1; }
  PG_PID=$(head -1 "$PG_DIR/data/postmaster.pid")
  printf '%s\n' \
    "INSERT INTO bench_insert (payload) VALUES (convert_to(repeat('Z', 100), 'UTF8'));" \
    >"$WORK/insert.sql"
  PG_VERSION=$("$PG_BIN/postgres" --version)
}

pg_remove() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  cp "$PG_DIR/postgres.log" "$OUT/postgres.log" 2>/dev/null || true
  rm -rf "$PG_DIR"
  PG_DIR=""
}

# --- Build -----------------------------------------------------------------------------------------

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries"
  cargo build --release -p cloudstate-proxy -p shopping-cart -p counters -p presence \
    -p cloudstate-loadgen
  cargo build --release -p cloudstate-e2e --bin test-function
fi

ROWS=()
PRESENCE_ROWS=()
NOTES=()
FAILED=0

# The JSON results of a scenario's runs ($OUT/$name.<n>.json).
results() {
  find "$OUT" -maxdepth 1 -name "$1.*.json" -size +0 | sort
}

# jq definitions shared by the tables.
JQ_DEFS='
  def ms: if . < 1 then (. * 1000 | round / 1000) elif . < 10 then (. * 100 | round / 100)
          elif . < 100 then (. * 10 | round / 10) else round end | tostring;
  def cores: . * 100 | round / 100 | tostring;
  def median: sort_by(.throughput_ops_s) | .[((length - 1) / 2 | floor)];
  def errors: [.[].errors | to_entries[]] | group_by(.key)
    | map("\(.[0].key) \(map(.value) | add)") | join(", ") | if . == "" then "0" else . end;
  def check: map(select(.check != null)) as $checked
    | if ($checked | length) == 0 then "n/a"
      elif ($checked | all(.check.passed)) then "pass (\($checked | length)/\(length) runs)"
      else "FAIL (\($checked | map(select(.check.passed | not)) | length) runs)" end;
  def cpu: if .cpu == null then "" else
      ([.cpu.processes | to_entries[] | "\(.key) \(.value | cores)"]
       + ["other \(.cpu.other | cores)"]) | join(", ") end;
  def per_call: if .cpu == null or .throughput_ops_s == 0 then "" else
      .throughput_ops_s as $ops
      | [.cpu.processes | to_entries[] | "\(.key) \(.value / $ops * 1e6 | round)"] | join(", ") end;'

# Adds the table row of one scenario.
row() {
  local label=$1 name=$2 runs count
  runs=$(results "$name")
  count=$(echo "$runs" | grep -c . || true)
  if [[ $count == 0 ]]; then
    ROWS+=("| $label | no result | | | | | | | | |")
    FAILED=1
    return
  fi
  [[ $count == "$REPEAT" ]] || {
    NOTES+=("- $label: only $count of $REPEAT runs gave a result")
    FAILED=1
  }
  # shellcheck disable=SC2086
  ROWS+=("$(jq -s -r --arg title "$label" "$JQ_DEFS"'
    sort_by(.throughput_ops_s) as $runs | ($runs | median) as $m
    | "| \($title) | \($m.throughput_ops_s | round) | \($runs[0].throughput_ops_s | round)–\($runs[-1].throughput_ops_s | round) | \($m.latency_ms.p50 | ms) | \($m.latency_ms.p99 | ms) | \($m.latency_ms.max | ms) | \($runs | errors) | \($runs | check) | \($m | cpu) | \($m | per_call) |"
  ' $runs)")
}

# Adds the row of a presence scenario: the latency of each kind of change.
presence_row() {
  local label=$1 name=$2 runs
  runs=$(results "$name")
  if [[ -z $runs ]]; then
    PRESENCE_ROWS+=("| $label | no result | | | | | | | | |")
    FAILED=1
    return
  fi
  # shellcheck disable=SC2086
  PRESENCE_ROWS+=("$(jq -s -r --arg title "$label" "$JQ_DEFS"'
    sort_by(.throughput_ops_s) as $runs | ($runs | median) as $m
    | $m.changes.connect.latency_ms as $c | $m.changes.disconnect.latency_ms as $d
    | "| \($title) | \($m.throughput_ops_s | round) | \($c.p50 | ms) | \($c.p99 | ms) | \($c.max | ms) | \($d.p50 | ms) | \($d.p99 | ms) | \($d.max | ms) | \($runs | errors) | \($runs | check) | \($m | cpu) |"
  ' $runs)")
}

# The median throughput of a scenario, empty without results.
median_ops() {
  local runs
  runs=$(results "$1")
  [[ -n $runs ]] || return 0
  # shellcheck disable=SC2086
  jq -s -r "$JQ_DEFS"' median | .throughput_ops_s' $runs
}

# "a / b = 46%" from the median throughputs of two scenarios, if both ran.
ratio() {
  local label=$1 a b
  a=$(median_ops "$2")
  b=$(median_ops "$3")
  [[ -n $a && -n $b ]] || return 0
  RATIOS+=("- $label: $(printf '%.0f' "$a") / $(printf '%.0f' "$b") = $(python3 -c "print(f'{$a / $b * 100:.0f}%')")")
}

# Notes warnings and errors in a log: for the proxy, those logged once ready.
log_note() {
  local name=$1 log=$2 what=$3 lines count
  if [[ $what == proxy ]]; then
    lines=$(sed -n '/ ready/,$p' "$log")
  else
    lines=$(cat "$log")
  fi
  count=$(echo "$lines" | grep -cE ' (WARN|ERROR) ' || true)
  if [[ $count != 0 ]]; then
    NOTES+=("- $name: the $what logged $count warnings/errors, first: \`$(echo "$lines" | grep -m1 -E ' (WARN|ERROR) ' | cut -c1-240)\`")
  fi
}

# The name of an echo scenario: echo-<n>conns for the lean client, echo-tonic-<n>conns.
echo_name() {
  local client=$1 connections=$2
  if [[ $client == lean ]]; then
    echo "echo-${connections}conns"
  else
    echo "echo-$client-${connections}conns"
  fi
}

# One echo baseline run: echo-server process + echo client (lean or tonic).
run_echo() {
  local client=$1 connections=$2 rep=$3 name port
  name=$(echo_name "$client" "$connections")
  port=$(free_port)
  log "$name run $rep: echo-server on $port"
  "$BIN/cloudstate-loadgen" echo-server --port "$port" >"$OUT/$name.$rep-server.log" 2>&1 &
  local server=$!
  PIDS+=("$server")
  local status=0
  if wait_for "$port" "$server"; then
    "$BIN/cloudstate-loadgen" echo --client "$client" --target "http://127.0.0.1:$port" \
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

# One run through the proxy: starts user function BINARY and a proxy on STORE (memory,
# embedded or postgres), runs `cloudstate-loadgen ARGS...` against it, and stops both.
run_proxied() {
  local name=$1 rep=$2 uf_bin=$3 store=$4 uf_port proxy_port store_arg data="" extra=()
  shift 4
  uf_port=$(free_port)
  proxy_port=$(free_port)
  case $store in
    memory) store_arg=memory ;;
    embedded) data="$WORK/data-$name.$rep" store_arg="embedded:$WORK/data-$name.$rep" ;;
    postgres)
      local database="${name//-/_}_$rep"
      pg_client createdb "$database"
      store_arg="postgres://postgres@127.0.0.1:$PG_PORT/$database"
      extra=(--watch-tree "postgres=$PG_PID")
      ;;
    *) log "unknown store $store"; return 1 ;;
  esac
  log "$name run $rep: $uf_bin on $uf_port, proxy on $proxy_port ($store_arg)"
  HOST=127.0.0.1 PORT=$uf_port "$BIN/$uf_bin" >"$OUT/$name.$rep-user-function.log" 2>&1 &
  local uf=$!
  PIDS+=("$uf")
  "$BIN/cloudstate-proxy" --http-interface 127.0.0.1 --http-port "$proxy_port" \
    --user-function-port "$uf_port" --store "$store_arg" >"$OUT/$name.$rep-proxy.log" 2>&1 &
  local proxy=$!
  PIDS+=("$proxy")
  local status=0
  if wait_for "http://127.0.0.1:$proxy_port/ready" "$proxy"; then
    "$BIN/cloudstate-loadgen" "$@" --target "http://127.0.0.1:$proxy_port" \
      --duration "$DURATION" --warmup "$WARMUP" --json \
      --watch-pid "proxy=$proxy" --watch-pid "user-function=$uf" "${extra[@]}" \
      "${LOADGEN_ARGS[@]}" >"$OUT/$name.$rep.json" 2>"$OUT/$name.$rep.txt" || status=$?
    cat "$OUT/$name.$rep.txt" >&2
  else
    status=1
  fi
  [[ $status == 0 ]] || FAILED=1
  stop "$proxy"
  stop "$uf"
  [[ -z $data ]] || rm -rf "$data"
  log_note "$name run $rep" "$OUT/$name.$rep-proxy.log" proxy
  log_note "$name run $rep" "$OUT/$name.$rep-user-function.log" "user function"
}

# pgbench on the cluster: one-row INSERT transactions into a fresh table of a fresh database.
run_pgbench() {
  local rep=$1 name="pgbench-${PG_CLIENTS}clients" database="pgbench_$1" status=0
  log "$name run $rep"
  pg_client createdb "$database"
  pg_client psql -d "$database" -v ON_ERROR_STOP=1 -qc \
    "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload bytea NOT NULL)"
  "$BIN/cloudstate-loadgen" pgbench --duration "$DURATION" --warmup "$WARMUP" --json \
    --watch-tree "postgres=$PG_PID" -- \
    "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -n -M prepared \
    -c "$PG_CLIENTS" -j 2 -f "$WORK/insert.sql" "$database" \
    >"$OUT/$name.$rep.json" 2>"$OUT/$name.$rep.txt" || status=$?
  cat "$OUT/$name.$rep.txt" >&2
  [[ $status == 0 ]] || FAILED=1
}

plural() { [[ $1 == 1 ]] && echo "$1 $2" || echo "$1 $2s"; }

# The name of a bounce scenario: bounce-<hops>hops, with -<n>clients unless at $CONCURRENCY.
bounce_name() {
  local hops=$1 clients=$2
  if [[ $clients == "$CONCURRENCY" ]]; then
    echo "bounce-${hops}hops"
  else
    echo "bounce-${hops}hops-${clients}clients"
  fi
}

keys_flags=(--concurrency "$CONCURRENCY" --keys 1000)
[[ $POSTGRES != 1 ]] || pg_start

for rep in $(seq "$REPEAT"); do
  wait_quiet
  log "round $rep of $REPEAT (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  if [[ $ECHO == 1 ]]; then
    for connections in $ECHO_CONNECTIONS; do
      for client in $ECHO_CLIENTS; do
        run_echo "$client" "$connections" "$rep"
      done
    done
  fi
  if [[ $CART == 1 ]]; then
    for store in $STORES; do
      for keys in $KEYS; do
        run_proxied "cart-$store-${keys}keys" "$rep" shopping-cart "$store" \
          cart --concurrency "$CONCURRENCY" --keys "$keys"
      done
    done
  fi
  if [[ $HTTP == 1 ]]; then
    run_proxied "cart-http-memory-1000keys" "$rep" shopping-cart memory \
      cart --protocol http "${keys_flags[@]}"
  fi
  if [[ $VALUE == 1 ]]; then
    for store in $VALUE_STORES; do
      for mode in update get; do
        run_proxied "value-$mode-$store-1000keys" "$rep" test-function "$store" \
          value --mode "$mode" "${keys_flags[@]}"
      done
    done
  fi
  if [[ $FORWARD == 1 ]]; then
    run_proxied "value-relay-memory-1000keys" "$rep" test-function memory \
      value --via relay "${keys_flags[@]}"
    for clients in $HOP_CLIENTS; do
      for hops in $HOPS; do
        run_proxied "$(bounce_name "$hops" "$clients")" "$rep" test-function memory \
          bounce --hops "$hops" --concurrency "$clients"
      done
    done
  fi
  if [[ $CRDT == 1 ]]; then
    run_proxied "crdt-pncounter-1000keys" "$rep" counters memory \
      crdt --counter pncounter "${keys_flags[@]}"
  fi
  if [[ $PRESENCE == 1 ]]; then
    run_proxied "presence-${PRESENCE_USERS}users" "$rep" presence memory \
      presence-latency --concurrency "$PRESENCE_USERS"
    run_proxied "presence-apart-${PRESENCE_USERS}users" "$rep" presence memory \
      presence-latency --concurrency "$PRESENCE_USERS" --monitors-apart
  fi
  if [[ $POSTGRES == 1 ]]; then
    run_proxied "cart-postgres-1000keys" "$rep" shopping-cart postgres \
      cart "${keys_flags[@]}"
    run_pgbench "$rep"
  fi
done

if [[ $ECHO == 1 ]]; then
  for connections in $ECHO_CONNECTIONS; do
    for client in $ECHO_CLIENTS; do
      if [[ $client == lean ]]; then
        label="echo baseline, $(plural "$connections" connection)"
      else
        label="echo, minimal $client client (reference), $(plural "$connections" connection)"
      fi
      row "$label" "$(echo_name "$client" "$connections")"
    done
  done
fi
if [[ $CART == 1 ]]; then
  for store in $STORES; do
    for keys in $KEYS; do
      row "cart, $store store, $(plural "$keys" key)" "cart-$store-${keys}keys"
    done
  done
fi
[[ $HTTP != 1 ]] || row "cart over HTTP/JSON, memory store, 1000 keys" "cart-http-memory-1000keys"
if [[ $VALUE == 1 ]]; then
  for store in $VALUE_STORES; do
    row "value entity Increment, $store store, 1000 keys" "value-update-$store-1000keys"
    row "value entity Get, $store store, 1000 keys" "value-get-$store-1000keys"
  done
fi
if [[ $FORWARD == 1 ]]; then
  row "Relay.ToCounter → Counter.Increment, memory store, 1000 keys" "value-relay-memory-1000keys"
  for clients in $HOP_CLIENTS; do
    for hops in $HOPS; do
      row "Relay.Bounce, $(plural "$hops" hop), $(plural "$clients" client)" \
        "$(bounce_name "$hops" "$clients")"
    done
  done
fi
[[ $CRDT != 1 ]] || row "CRDT PNCounter increment, 1000 keys" "crdt-pncounter-1000keys"
if [[ $PRESENCE == 1 ]]; then
  row "presence changes, $PRESENCE_USERS users, monitor on the user's connection" "presence-${PRESENCE_USERS}users"
  row "presence changes, $PRESENCE_USERS users, monitors on connections apart" "presence-apart-${PRESENCE_USERS}users"
  presence_row "monitor on the user's connection" "presence-${PRESENCE_USERS}users"
  presence_row "monitors on connections apart" "presence-apart-${PRESENCE_USERS}users"
fi
if [[ $POSTGRES == 1 ]]; then
  row "cart, postgres store, 1000 keys" "cart-postgres-1000keys"
  row "pgbench one-row INSERT, $PG_CLIENTS clients" "pgbench-${PG_CLIENTS}clients"
fi

RATIOS=()
# The honest-limit criterion: the lean client's echo reaches at least 90% of the tonic client's.
for connections in $ECHO_CONNECTIONS; do
  lean=$(median_ops "echo-${connections}conns")
  tonic=$(median_ops "echo-tonic-${connections}conns")
  [[ -n $lean && -n $tonic ]] || continue
  verdict=$(python3 -c "print('pass' if $lean >= 0.9 * $tonic else 'FAIL')")
  [[ $verdict == pass ]] || FAILED=1
  RATIOS+=("- echo lean client / minimal tonic client ($(plural "$connections" connection)): $(printf '%.0f' "$lean") / $(printf '%.0f' "$tonic") = $(python3 -c "print(f'{$lean / $tonic * 100:.0f}%')") (at least 90%: $verdict)")
done
ratio "cart memory 1,000 keys / echo ($CONCURRENCY connections)" cart-memory-1000keys "echo-${CONCURRENCY}conns"
ratio "cart HTTP/JSON / cart gRPC (memory, 1,000 keys)" cart-http-memory-1000keys cart-memory-1000keys
ratio "value Increment / cart AddItem (memory, 1,000 keys)" value-update-memory-1000keys cart-memory-1000keys
ratio "value Increment embedded / memory" value-update-embedded-1000keys value-update-memory-1000keys
ratio "Relay.ToCounter / Counter.Increment (memory)" value-relay-memory-1000keys value-update-memory-1000keys
ratio "CRDT PNCounter / value Increment (memory)" crdt-pncounter-1000keys value-update-memory-1000keys
ratio "cart postgres / pgbench" cart-postgres-1000keys "pgbench-${PG_CLIENTS}clients"
ratio "cart postgres / cart embedded (1,000 keys)" cart-postgres-1000keys cart-embedded-1000keys

{
  echo
  echo "$([[ " ${LOADGEN_ARGS[*]} " == *" --rate "* ]] && echo "Open loop" || echo "Closed loop"), $CONCURRENCY clients (one connection each unless said otherwise)," \
    "$WARMUP warm-up, $DURATION measured, $(plural "$REPEAT" run) per scenario" \
    "(figures of the median run by throughput; range over all runs)."
  [[ ${#LOADGEN_ARGS[@]} == 0 ]] || echo "Extra loadgen flags: \`${LOADGEN_ARGS[*]}\`."
  echo
  echo "| scenario | ops/s | ops/s range | p50 ms | p99 ms | max ms | errors | check | cpu, cores (median run) | cpu µs per call (median run) |"
  echo "|---|---:|---:|---:|---:|---:|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  if [[ ${#PRESENCE_ROWS[@]} != 0 ]]; then
    echo
    echo "Presence, $PRESENCE_USERS users, time from the change to the Monitor stream delivering it (median run):"
    echo
    echo "| monitors | changes/s | connect → online p50 ms | p99 | max | disconnect → offline p50 ms | p99 | max | errors | check | cpu, cores |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"
    printf '%s\n' "${PRESENCE_ROWS[@]}"
  fi
  if [[ $FORWARD == 1 ]]; then
    for clients in $HOP_CLIENTS; do
      pattern=$(bounce_name '*' "$clients")
      results "$pattern" | grep -q . || continue
      echo
      echo "Forward chain (Relay.Bounce), $(plural "$clients" client), median run per hop count:"
      echo
      # shellcheck disable=SC2046
      "$BIN/cloudstate-loadgen" hop-cost $(results "$pattern") || true
    done
  fi
  if [[ ${#RATIOS[@]} != 0 ]]; then
    echo
    echo "Ratios of median throughputs:"
    echo
    printf '%s\n' "${RATIOS[@]}"
  fi
  echo
  if [[ ${#NOTES[@]} != 0 ]]; then
    printf '%s\n' "${NOTES[@]}"
    echo
  fi
  echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), kernel $(uname -r)."
  [[ $POSTGRES != 1 ]] || echo "PostgreSQL: $PG_VERSION, fsync on, cluster under $TARGET_DIR."
  echo "Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Source: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes in the tree'), binaries built $(date -u -r "$BIN/cloudstate-proxy" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?')."
  echo "Results and logs: $OUT"
} | tee "$OUT/table.md"

exit "$FAILED"
