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

# The browser libraries, from the npm registry at install time (the lockfile pins them and
# their integrity hashes), copied next to the pages that use them: the API serves them, no
# CDN at run time. MapLibre GL JS for the map, Swagger UI for /docs. build_assets.py does
# the copy, here and in the wheel's build step (setup.py); a no-op while they are current.
if ! .venv/bin/python build_assets.py; then
  echo "bootstrap: without them /map and /docs cannot be served: install Node.js and npm, rerun" >&2
fi
