#!/usr/bin/env bash
# Installs the compatibility user functions of compat/ (shopping carts written with the ORIGINAL
# Cloudstate support libraries: npm cloudstate 0.0.3 and PyPI cloudstate 0.1.1) into a cache
# directory outside the git tree, so that end-to-end tests can start them as processes.
#
#   scripts/install-compat.sh            install (or check) and print `export ...` lines on stdout
#   eval "$(scripts/install-compat.sh)"  same, and set the variables in the calling shell
#
# Environment:
#   CLOUDSTATE_COMPAT_DIR  where to install (default: $HOME/.cache/cloudstate-compat)
#   COMPAT_PYTHON          CPython >= 3.9 used to create the venvs (default: python3)
#
# Idempotent: everything is keyed by a hash of the compat sources, lockfiles, this script and the
# node/python versions; an unchanged tree is a no-op (well under 2 s). Each part has its own key, so
# editing index.js does not rebuild the native grpc module (about 2 min on 2 cores).
#
# Layout of $CLOUDSTATE_COMPAT_DIR (see compat/README.md):
#   tools/                 venv with grpcio-tools: protoc + google/protobuf/*.proto (build time only)
#   python/                venv: cloudstate==0.1.1 (--no-deps), protobuf 3.20.3, grpcio, googleapis-common-protos
#   node-shopping-cart/    index.js, proto/, node_modules/ (grpc built from source), user-function.desc
#   python-shopping-cart/  shoppingcart.py, proto/, shoppingcart_pb2.py, domain_pb2.py
#   env.sh                 the export lines printed at the end
#   logs/                  output of npm/pip/protoc of the last install
#
# Progress goes to stderr; stdout only carries the export lines.
set -Eeuo pipefail

log() { printf 'install-compat: %s\n' "$*" >&2; }
# On failure, also put a failing command on stdout: `eval "$(scripts/install-compat.sh)"` would otherwise
# evaluate an empty string and succeed, hiding the failure from a caller running with `set -e`.
fail_stdout() { printf 'echo "install-compat.sh failed (see messages above)" >&2; false\n'; }
die() { printf 'install-compat: ERROR: %s\n' "$*" >&2; fail_stdout; exit 1; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO/compat"
DIR="${CLOUDSTATE_COMPAT_DIR:-$HOME/.cache/cloudstate-compat}"
PY="${COMPAT_PYTHON:-python3}"
CLOUDSTATE_PY_VERSION="0.1.1"

[ -d "$SRC/node-shopping-cart" ] && [ -d "$SRC/python-shopping-cart" ] || die "compat sources not found under $SRC"
command -v node >/dev/null 2>&1 || die "node is not on PATH (Node.js >= 12 is needed; tested with v20)"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH"
command -v "$PY" >/dev/null 2>&1 || die "$PY is not on PATH (set COMPAT_PYTHON to a CPython >= 3.9)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is not on PATH"

mkdir -p "$DIR" || die "cannot create $DIR"
DIR="$(cd "$DIR" && pwd)"

emit_env() {
  cat <<EOF
export CLOUDSTATE_COMPAT_DIR='$DIR'
export CLOUDSTATE_COMPAT_NODE_CART='$DIR/node-shopping-cart/index.js'
export CLOUDSTATE_COMPAT_PYTHON='$DIR/python/bin/python'
export CLOUDSTATE_COMPAT_PYTHON_CART='$DIR/python-shopping-cart/shoppingcart.py'
EOF
}

# Only one installer at a time per directory.
exec 9>"$DIR/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 1800 9 || die "timed out waiting for another install-compat.sh holding $DIR/.lock"
fi

NODE_VERSION="$(node --version)"
PY_VERSION="$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')" || die "cannot run $PY"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
  || die "$PY is Python $PY_VERSION; need >= 3.9 (set COMPAT_PYTHON)"

hash_files() { # hash_files <extra string> <file>... : content hash of the files (paths relative to $REPO)
  local extra="$1"; shift
  { printf '%s\n' "$extra"; (cd "$REPO" && sha256sum "$@"); } | sha256sum | cut -c1-16
}

ALL_SOURCES=()
while IFS= read -r f; do ALL_SOURCES+=("$f"); done < <(
  cd "$REPO" && find compat -type f ! -path '*/node_modules/*' ! -path '*/__pycache__/*' ! -name '*.pyc' \
    ! -name '*_pb2.py' ! -name '*_pb2_grpc.py' ! -name 'user-function.desc' | LC_ALL=C sort)
ALL_KEY="$(hash_files "dir=$DIR node=$NODE_VERSION python=$PY_VERSION" scripts/install-compat.sh "${ALL_SOURCES[@]}")"

if [ "$(cat "$DIR/.installed-key" 2>/dev/null || true)" = "$ALL_KEY" ] \
   && [ -f "$DIR/node-shopping-cart/user-function.desc" ] && [ -x "$DIR/python/bin/python" ] \
   && [ -f "$DIR/python-shopping-cart/shoppingcart_pb2.py" ]; then
  log "up to date in $DIR (key $ALL_KEY)"
  emit_env
  exit 0
fi

START=$(date +%s)
mkdir -p "$DIR/logs"
STEP=""
on_error() {
  local rc=$?
  printf 'install-compat: FAILED (exit %s) during: %s\n' "$rc" "$STEP" >&2
  if [ -n "${STEP_LOG:-}" ] && [ -f "$STEP_LOG" ]; then
    printf 'install-compat: last lines of %s:\n' "$STEP_LOG" >&2
    tail -n 40 "$STEP_LOG" | sed 's/^/    /' >&2
  fi
  fail_stdout
  exit "$rc"
}
trap on_error ERR
step() { STEP="$1"; STEP_LOG="${2:-}"; log "$STEP${STEP_LOG:+ (log: $STEP_LOG)}"; }

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

# ---- Python venvs --------------------------------------------------------------------------------
make_venv() { # make_venv <name> <key> <pip args...>
  local name="$1" key="$2"; shift 2
  local venv="$DIR/$name"
  if [ "$(cat "$venv/.compat-key" 2>/dev/null || true)" = "$key" ] && [ -x "$venv/bin/python" ]; then
    log "venv $venv is up to date"
    return 0
  fi
  step "creating venv $venv" "$DIR/logs/$name-venv.log"
  rm -rf "$venv"
  "$PY" -m venv "$venv" >"$STEP_LOG" 2>&1
  "$venv/bin/python" -m pip install "$@" >>"$STEP_LOG" 2>&1
  printf '%s\n' "$key" >"$venv/.compat-key"
}

TOOLS_KEY="$(hash_files "python=$PY_VERSION" compat/tools-requirements.txt)"
make_venv tools "$TOOLS_KEY" -r "$SRC/tools-requirements.txt"
TOOLS_PY="$DIR/tools/bin/python"
GRPC_TOOLS_PROTO="$("$TOOLS_PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
[ -f "$GRPC_TOOLS_PROTO/google/protobuf/descriptor.proto" ] || die "grpcio-tools has no google/protobuf includes in $GRPC_TOOLS_PROTO"

PY_KEY="$(hash_files "python=$PY_VERSION cloudstate=$CLOUDSTATE_PY_VERSION" compat/python-shopping-cart/requirements.txt)"
if [ "$(cat "$DIR/python/.compat-key" 2>/dev/null || true)" != "$PY_KEY" ]; then
  make_venv python "pending" -r "$SRC/python-shopping-cart/requirements.txt"
  step "installing cloudstate==$CLOUDSTATE_PY_VERSION (--no-deps) into $DIR/python" "$DIR/logs/python-venv.log"
  "$DIR/python/bin/python" -m pip install --no-deps "cloudstate==$CLOUDSTATE_PY_VERSION" >>"$STEP_LOG" 2>&1
  printf '%s\n' "$PY_KEY" >"$DIR/python/.compat-key"
else
  log "venv $DIR/python is up to date"
fi
SITE_PACKAGES="$("$DIR/python/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# ---- Python function -----------------------------------------------------------------------------
step "copying python-shopping-cart and generating its protobuf modules" "$DIR/logs/python-protoc.log"
PAPP="$DIR/python-shopping-cart"
rm -rf "$PAPP"
mkdir -p "$PAPP"
cp "$SRC/python-shopping-cart/shoppingcart.py" "$SRC/python-shopping-cart/requirements.txt" "$PAPP/"
cp -R "$SRC/python-shopping-cart/proto" "$PAPP/proto"
# -I order: our protos (incl. the 50002 cloudstate/entity_key.proto), google/protobuf from grpcio-tools,
# google/api from googleapis-common-protos in the runtime venv.
"$TOOLS_PY" -m grpc_tools.protoc -I"$PAPP/proto" -I"$GRPC_TOOLS_PROTO" -I"$SITE_PACKAGES" \
  --python_out="$PAPP" shoppingcart.proto domain.proto >"$STEP_LOG" 2>&1
step "checking that the python function imports" "$DIR/logs/python-import.log"
(cd "$PAPP" && "$DIR/python/bin/python" -c 'import shoppingcart' >"$STEP_LOG" 2>&1)

# ---- Node function -------------------------------------------------------------------------------
NAPP="$DIR/node-shopping-cart"
NODE_KEY="$(hash_files "node=$NODE_VERSION tools=$TOOLS_KEY" compat/node-shopping-cart/package.json compat/node-shopping-cart/package-lock.json)"
mkdir -p "$NAPP"
if [ "$(cat "$NAPP/node_modules/.compat-key" 2>/dev/null || true)" != "$NODE_KEY" ]; then
  rm -rf "$NAPP/node_modules"
  cp "$SRC/node-shopping-cart/package.json" "$SRC/node-shopping-cart/package-lock.json" "$NAPP/"
  # --ignore-scripts: cloudstate's postinstall downloads protoc from the internet, and grpc's
  # install script first tries to download a prebuilt binary; both are replaced below.
  step "npm ci --ignore-scripts in $NAPP" "$DIR/logs/npm-ci.log"
  (cd "$NAPP" && npm ci --ignore-scripts --no-audit --no-fund >"$STEP_LOG" 2>&1)

  NODEDIR="${npm_config_nodedir:-}"
  if [ -z "$NODEDIR" ]; then
    for d in /usr /usr/local "$(dirname "$(dirname "$(command -v node)")")"; do
      if [ -f "$d/include/node/node.h" ] && [ -f "$d/include/node/common.gypi" ]; then NODEDIR="$d"; break; fi
    done
  fi
  [ -n "$NODEDIR" ] || die "no Node.js headers found (need <dir>/include/node/node.h; set npm_config_nodedir) to build grpc"
  step "building the native grpc module from source (nodedir=$NODEDIR; ~2 min)" "$DIR/logs/npm-rebuild-grpc.log"
  (cd "$NAPP" && npm_config_nodedir="$NODEDIR" npm_config_build_from_source=true JOBS=max npm_config_jobs=max \
     npm rebuild grpc --foreground-scripts >"$STEP_LOG" 2>&1)
  (cd "$NAPP" && node -e 'require("grpc")' >>"$STEP_LOG" 2>&1) || { STEP="loading the built grpc module"; false; }

  # What the library's postinstall would have downloaded: protoc/bin/protoc and protoc/include.
  step "providing protoc and google/protobuf includes to node_modules/cloudstate/protoc"
  PROTOC_DIR="$NAPP/node_modules/cloudstate/protoc"
  mkdir -p "$PROTOC_DIR/bin" "$PROTOC_DIR/include"
  cp -R "$GRPC_TOOLS_PROTO/google" "$PROTOC_DIR/include/"
  cat >"$PROTOC_DIR/bin/protoc" <<EOF
#!/bin/sh
# protoc from grpcio-tools (installed by scripts/install-compat.sh)
exec '$TOOLS_PY' -m grpc_tools.protoc "\$@"
EOF
  chmod +x "$PROTOC_DIR/bin/protoc"
  printf '%s\n' "$NODE_KEY" >"$NAPP/node_modules/.compat-key"
else
  log "node_modules in $NAPP are up to date"
fi

step "copying node-shopping-cart and compiling user-function.desc" "$DIR/logs/node-descriptor.log"
rm -rf "$NAPP/proto" "$NAPP/user-function.desc"
cp "$SRC/node-shopping-cart/index.js" "$SRC/node-shopping-cart/package.json" "$SRC/node-shopping-cart/package-lock.json" "$NAPP/"
cp -R "$SRC/node-shopping-cart/proto" "$NAPP/proto"
# The library's own compile-descriptor: protoc --include_imports with its bundled protos
# (cloudstate/entity_key.proto with option 50002, google/api/*) on the path.
(cd "$NAPP" && node node_modules/cloudstate/bin/compile-descriptor.js --proto_path=proto \
   shoppingcart.proto domain.proto >"$STEP_LOG" 2>&1)
[ -s "$NAPP/user-function.desc" ] || { STEP="compile-descriptor produced no user-function.desc"; false; }

emit_env >"$DIR/env.sh"
printf '%s\n' "$ALL_KEY" >"$DIR/.installed-key"
trap - ERR
log "installed in $DIR in $(( $(date +%s) - START ))s"
log "  node:   PORT=8080 node $NAPP/index.js"
log "  python: PORT=8080 $DIR/python/bin/python $PAPP/shoppingcart.py"
emit_env
