#!/usr/bin/env bash
# Makes .venv with wangge and its dev tools on first use, and again when pyproject.toml
# changes; everything else (PostGIS, the broker) is installed by `wangge services start`.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=.venv/.wangge-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing wangge and its dev tools into .venv"
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet --editable '.[dev]'
  touch "$stamp"
fi
