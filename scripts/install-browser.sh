#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver (Debian's `chromium` and `chromium-driver`) for
# the browser test of the presence example (crates/e2e/tests/presence_browser.rs), if missing.
# Needs root (apt-get), as CI has. Prints nothing to stdout.
set -Eeuo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser.sh: chromium and chromedriver are missing; run as root, or" \
    "apt-get install chromium chromium-driver" >&2
  exit 1
fi
echo "== installing chromium and chromium-driver (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
