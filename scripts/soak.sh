#!/usr/bin/env bash
# A bounded soak test (not part of CI): mixed traffic against the proxy while faults are
# injected, reporting the proxy's memory (RSS) and open file descriptors over time, and checking
# at the end that every acknowledged command is in the store.
#
# Runs the shopping cart user function behind the proxy with the embedded store, and
# `cloudstate-loadgen cart` twice at once: over gRPC and over HTTP/JSON (each checks, at the
# end, that every cart holds exactly what was acknowledged, give or take the calls that
# failed). Meanwhile, until 20 s before the end:
#   - every UF_KILL_EVERY the user function is killed (SIGKILL) and started again;
#   - every UF_FREEZE_EVERY it is frozen (SIGSTOP) for 3 s;
#   - every DISK_FULL_EVERY the store's disk (a small tmpfs, when it can be mounted, i.e. as
#     root) is filled for 3 s, then freed.
# Every SAMPLE_EVERY a line: elapsed seconds, proxy RSS (KiB), proxy open fds, user function
# RSS, /ready status. The samples also go to $OUT/samples.csv.
#
# Environment:
#   DURATION=600 (seconds of load)  CONCURRENCY=32 (clients per loadgen)  KEYS=200
#   UF_KILL_EVERY=60  UF_FREEZE_EVERY=90  DISK_FULL_EVERY=120  SAMPLE_EVERY=10 (seconds; 0 = never)
#   PROFILE=release (or debug: use what `cargo build` left in target/debug)
#   SKIP_BUILD=1 (use the binaries already built)  OUT=target/soak/<timestamp>
# Exit status: 0 if both checks passed and the proxy is still alive, 1 otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${DURATION:-600}
CONCURRENCY=${CONCURRENCY:-32}
KEYS=${KEYS:-200}
UF_KILL_EVERY=${UF_KILL_EVERY:-60}
UF_FREEZE_EVERY=${UF_FREEZE_EVERY:-90}
DISK_FULL_EVERY=${DISK_FULL_EVERY:-120}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
PROFILE=${PROFILE:-release}
OUT=${OUT:-target/soak/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
BIN=target/$PROFILE

log() { echo "soak: $*" >&2; }

if [[ -z ${SKIP_BUILD:-} ]]; then
  flag=()
  [[ $PROFILE == release ]] && flag=(--release)
  log "building ($PROFILE)"
  cargo build "${flag[@]}" -p cloudstate-proxy -p shopping-cart -p cloudstate-loadgen --bins
fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PIDS=()
MOUNT=""
cleanup() {
  for pid in "${PIDS[@]}" ${UF_PID:-}; do
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ -n $MOUNT ]]; then umount -l "$MOUNT" 2>/dev/null || true; fi
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on $1"
  return 1
}

# The store's disk: a 64 MiB tmpfs if it can be mounted (root), else a plain directory.
STORE_DIR=$OUT/store
mkdir -p "$STORE_DIR"
if [[ $DISK_FULL_EVERY != 0 ]] && mount -t tmpfs -o size=64m tmpfs "$STORE_DIR" 2>/dev/null; then
  MOUNT=$STORE_DIR
  log "store on a 64 MiB tmpfs at $STORE_DIR"
else
  DISK_FULL_EVERY=0
  log "store in $STORE_DIR (no tmpfs: disk-full faults off)"
fi

UF_PORT=$(free_port)
PROXY_PORT=$(free_port)
start_user_function() {
  HOST=127.0.0.1 PORT=$UF_PORT "$BIN/shopping-cart" >>"$OUT/user-function.log" 2>&1 &
  UF_PID=$!
  wait_port "$UF_PORT"
}
start_user_function
"$BIN/cloudstate-proxy" --http-interface 127.0.0.1 --http-port "$PROXY_PORT" \
  --user-function-port "$UF_PORT" --store "embedded:$STORE_DIR/data" \
  --discovery-max-backoff 200ms >"$OUT/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 600); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PROXY_PORT/ready" 2>/dev/null && break
  sleep 0.1
done
log "proxy $PROXY_PID on $PROXY_PORT, user function $UF_PID on $UF_PORT; output in $OUT"

for protocol in grpc http; do
  "$BIN/cloudstate-loadgen" cart --target "http://127.0.0.1:$PROXY_PORT" --protocol "$protocol" \
    --concurrency "$CONCURRENCY" --keys "$KEYS" --warmup 0s --duration "${DURATION}s" \
    --timeout 10s >"$OUT/loadgen-$protocol.log" 2>&1 &
  PIDS+=($!)
  eval "LOADGEN_$protocol=$!"
done

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

echo "seconds,proxy_rss_kib,proxy_fds,user_function_rss_kib,ready" >"$OUT/samples.csv"
printf '%8s %14s %10s %14s %6s\n' seconds proxy_rss_KiB proxy_fds uf_rss_KiB ready
start=$SECONDS
faults_until=$((DURATION - 20))
while kill -0 "$LOADGEN_grpc" 2>/dev/null || kill -0 "$LOADGEN_http" 2>/dev/null; do
  sleep 1
  t=$((SECONDS - start))
  if ((t < faults_until)); then
    if ((UF_KILL_EVERY > 0 && t > 0 && t % UF_KILL_EVERY == 0)); then
      log "t=$t: killing the user function"
      kill -KILL "$UF_PID" 2>/dev/null || true
      wait "$UF_PID" 2>/dev/null || true
      start_user_function
    elif ((UF_FREEZE_EVERY > 0 && t > 0 && t % UF_FREEZE_EVERY == 0)); then
      log "t=$t: freezing the user function for 3 s"
      kill -STOP "$UF_PID"; sleep 3; kill -CONT "$UF_PID"
    elif ((DISK_FULL_EVERY > 0 && t > 0 && t % DISK_FULL_EVERY == 0)); then
      log "t=$t: filling the store's disk for 3 s"
      dd if=/dev/zero of="$STORE_DIR/ballast" bs=1M 2>/dev/null || true
      sleep 3
      rm -f "$STORE_DIR/ballast"
    fi
  fi
  if ((SAMPLE_EVERY > 0 && t % SAMPLE_EVERY == 0)); then
    ready=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PROXY_PORT/ready" || true)
    line=("$t" "$(rss "$PROXY_PID")" "$(fds "$PROXY_PID")" "$(rss "$UF_PID")" "$ready")
    (IFS=,; echo "${line[*]}") >>"$OUT/samples.csv"
    printf '%8s %14s %10s %14s %6s\n' "${line[@]}"
  fi
done

status=0
for protocol in grpc http; do
  pid_var=LOADGEN_$protocol
  if wait "${!pid_var}"; then
    log "$protocol: every acknowledged command is in the store"
  else
    log "$protocol: the check FAILED (see $OUT/loadgen-$protocol.log)"
    status=1
  fi
  tail -n 15 "$OUT/loadgen-$protocol.log" | sed "s/^/  $protocol| /" >&2
done
if ! kill -0 "$PROXY_PID" 2>/dev/null; then
  log "the proxy died (see $OUT/proxy.log)"
  status=1
fi
log "warnings and errors logged by the proxy: $(grep -cE ' (WARN|ERROR) ' "$OUT/proxy.log" || true)"
exit $status
