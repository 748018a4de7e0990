#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need outside cargo (the
# original Cloudstate support libraries for the compatibility tests, Chromium for the browser
# test), builds every binary once,
# then runs every test of the workspace (unit, storage suites, end-to-end with real processes).
#
#   scripts/test.sh                 everything
#   scripts/test.sh -E 'test(cart)' extra arguments go to cargo nextest (a filter, here)
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== installing compatibility user functions (cached after the first run)" >&2
eval "$(scripts/install-compat.sh)"

# Headless Chromium and chromedriver for the presence page's browser test.
scripts/install-browser.sh

if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "== installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

echo "== building binaries" >&2
cargo build --workspace --bins
export CLOUDSTATE_BIN_DIR="$PWD/target/debug"

echo "== running tests" >&2
cargo nextest run --workspace --no-fail-fast "$@"
if [ $# -eq 0 ]; then
  cargo test --workspace --doc --quiet
fi
