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
# CDN at run time. MapLibre GL JS for the map, Swagger UI for /docs.
assets=grid_service/map_assets
vendor=grid_service/static/vendor
stamp_file=$vendor/.installed
if [ ! -f "$stamp_file" ] || [ "$assets/package-lock.json" -nt "$stamp_file" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "bootstrap: npm is missing, so /map and /docs cannot be served: install Node.js and npm, rerun" >&2
  else
    echo "bootstrap: fetching MapLibre GL JS and Swagger UI (npm ci)"
    # --ignore-scripts: no package runs code here (swagger-ui-dist's analytics hook included).
    (cd "$assets" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    rm -rf "$vendor"
    mkdir -p "$vendor/maplibre-gl" "$vendor/swagger-ui"
    dist="$assets/node_modules/maplibre-gl/dist"
    cp "$dist/maplibre-gl.mjs" "$dist/maplibre-gl-worker.mjs" "$dist/maplibre-gl-shared.mjs" \
      "$dist/maplibre-gl.css" "$assets/node_modules/maplibre-gl/LICENSE.txt" "$vendor/maplibre-gl/"
    swagger="$assets/node_modules/swagger-ui-dist"
    cp "$swagger/swagger-ui-bundle.js" "$swagger/swagger-ui.css" "$swagger/favicon-32x32.png" \
      "$swagger/LICENSE" "$swagger/NOTICE" "$vendor/swagger-ui/"
    rm -rf "$assets/node_modules"
    touch "$stamp_file"
  fi
fi
