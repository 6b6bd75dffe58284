"""The map benchmark's plumbing: one unthrottled load of /map signed in by password, with
the bytes sorted by kind and the rows built; no figure is judged."""

import pytest

from wangge.benchmarks.map_load import KINDS, PROFILES, as_rows, kind_of, run_map_load

pytestmark = pytest.mark.integration


def test_a_password_sign_in_then_a_cold_reload_is_timed_to_the_grids_with_bytes_by_kind(
    postgis_server: str, reference_database_url: str, kafka_bootstrap: str
) -> None:
    desktop = PROFILES[0]
    assert not desktop.throttled
    paints = run_map_load(
        f"{postgis_server}/postgres",
        kafka_bootstrap,
        1,
        profiles=[desktop],
        reference_database_url=reference_database_url,
    )

    (paint,) = paints[desktop.name]
    assert paint.seconds > 0
    assert paint.sign_in_seconds is not None
    assert paint.sign_in_seconds > 0
    assert paint.grids_drawn > 0
    assert paint.grid_tiles > 0
    assert paint.tiles_by_layer["grids"] == paint.grid_tiles
    # The HTTP cache was emptied before the timed load: every kind crossed the network,
    # MapLibre's worker's tiles among them.
    assert set(paint.bytes_by_kind) == set(KINDS)
    # The panels load beside the grids: counted when installed before the paint (on a
    # loaded machine they may come after it, and then their bytes are not the paint's).
    crossed = [kind for kind in KINDS if kind != "panels" or paint.panels_at_paint]
    assert all(paint.bytes_by_kind[kind] > 0 for kind in crossed), paint.bytes_by_kind
    # MapLibre GL JS crossed whole: about 300 kB gzipped (1.1 MB as stored).
    assert paint.bytes_by_kind["maplibre"] > 250_000
    assert paint.bytes_received == sum(paint.bytes_by_kind.values())

    median, received = as_rows(paints)
    assert median.unit == "s"
    assert median.ours == paint.seconds
    assert median.target == "<= 2 s"
    assert median.met is (paint.seconds <= 2)
    assert received.unit == "KiB"
    assert received.ours == paint.bytes_received / 1024
    assert "tiles" in received.detail
    assert "panels" in received.detail


def test_requests_are_sorted_by_kind_by_their_path() -> None:
    base = "http://127.0.0.1:8000"
    assert kind_of(f"{base}/map/assets/vendor/maplibre-gl/maplibre-gl.mjs") == "maplibre"
    assert kind_of(f"{base}/tiles/grids/11/1633/815.pbf") == "tiles"
    assert kind_of(f"{base}/tiles/grids.json") == "tiles"
    assert kind_of(f"{base}/api/v1/compliance?level=grid") == "api"
    assert kind_of(f"{base}/ogc/collections/districts/items/610302") == "api"
    assert kind_of(f"{base}/map/panels.json") == "panels"
    assert kind_of(f"{base}/map/assets/panels/walk.js") == "panels"
    assert kind_of(f"{base}/map/assets/map.js") == "page"
    assert kind_of(f"{base}/map") == "page"
