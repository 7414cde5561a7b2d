#!/usr/bin/env bash
# Installs everything wabapool needs into ./.venv (Python package with its dev tools).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[dev]'
