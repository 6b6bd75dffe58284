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

# The map's MapLibre GL JS, from the npm registry at install time (the lockfile pins it and
# its integrity hash), copied next to the page: the API serves it, no CDN at run time.
assets=grid_service/map_assets
vendor=grid_service/static/vendor/maplibre-gl
if [ ! -f "$vendor/.installed" ] || [ "$assets/package-lock.json" -nt "$vendor/.installed" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: npm is missing, so /map cannot be served: install Node.js and npm, rerun" >&2
  else
    echo "bootstrap: fetching MapLibre GL JS for the map (npm ci)"
    (cd "$assets" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    rm -rf "$vendor"
    mkdir -p "$vendor"
    dist="$assets/node_modules/maplibre-gl/dist"
    cp "$dist/maplibre-gl.mjs" "$dist/maplibre-gl-worker.mjs" "$dist/maplibre-gl-shared.mjs" \
      "$dist/maplibre-gl.css" "$assets/node_modules/maplibre-gl/LICENSE.txt" "$vendor/"
    rm -rf "$assets/node_modules"
    touch "$vendor/.installed"
  fi
fi
