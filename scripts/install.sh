#!/usr/bin/env bash
# Installs everything wabapool needs: ./.venv (the Python package with its dev tools, Playwright and axe for the
# page's browser tests), Chromium for those tests (system package, when missing and we are root), and the
# Package Usage page built into src/wabapool/web_dist (npm ci from the committed lockfile, then vite build).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'

# The browser tests drive the system Chromium (Playwright's own download is not used).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

npm --prefix web ci --no-audit --no-fund
npm --prefix web run build
