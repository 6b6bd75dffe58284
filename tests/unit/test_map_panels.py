"""The map's panel listing: every module in static/panels, in name order, nothing else."""

from pathlib import Path

import pytest

from grid_service import map as map_page


def test_panels_are_the_js_modules_in_name_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("walk.js", "basemap.js", "README.md", "coverage.js"):
        (tmp_path / name).write_text("export function install() {}\n")
    monkeypatch.setattr(map_page, "PANELS_DIR", tmp_path)

    assert map_page.get_map_panels().panels == ["basemap.js", "coverage.js", "walk.js"]


def test_no_panel_folder_lists_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(map_page, "PANELS_DIR", tmp_path / "absent")

    assert map_page.get_map_panels().panels == []
