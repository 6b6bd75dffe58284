#!/usr/bin/env bash
# System tools the test suite uses besides Python: Debian's docker-compose validates
# docker/compose.yaml without a Docker engine; gdal-bin's ogrinfo/ogr2ogr read the OGC
# API as a GIS desktop would; chromium is the browser Playwright drives in the map's test
# (Debian's build, so that no browser is ever downloaded), with a small Chinese font so
# that its screenshots are legible. Installed once, when missing.
set -euo pipefail
missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v ogr2ogr >/dev/null 2>&1 || missing+=(gdal-bin)
[ -x /usr/bin/chromium ] || missing+=(chromium)
{ command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh)" ]; } || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-tools: please install: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "test-tools: installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The peer benchmark's own environment (tipg, pip-installed from the package index into
# .bench/peers-venv), made here once so that its test measures rather than installs. If
# the index cannot be reached, the rest of the suite still runs and that test fails with
# pip's message.
"$(dirname "$0")/../.venv/bin/python" -c 'from wangge.benchmarks.peer_env import ensure_peer_environment as made; print("test-tools:", made().describe())' \
  || echo "test-tools: could not make the peer benchmark's environment (tipg); test_bench_peers will fail" >&2
