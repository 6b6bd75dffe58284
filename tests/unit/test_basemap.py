"""geodata.basemap and WANGGE_BASEMAP: providers, URLs, and what the page may fetch."""

import pytest
from pydantic import ValidationError

from geodata.basemap import InvalidBasemap, parse_basemap
from wangge.settings import BasemapSettings

KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("value", ["", "none", "None", " off "])
def test_none_draws_nothing(value: str) -> None:
    assert parse_basemap(value) is None


def test_the_default_setting_is_no_basemap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANGGE_BASEMAP", raising=False)
    assert BasemapSettings(_env_file=None).basemap_config() is None


def test_amap_is_gcj02_over_four_hosts() -> None:
    basemap = parse_basemap("gaode")
    assert basemap is not None
    assert (basemap.name, basemap.crs, basemap.scheme) == ("amap", "gcj02", "xyz")
    assert basemap.origins() == tuple(f"https://webrd0{n}.is.autonavi.com" for n in "1234")
    assert all("{z}" in url and "{x}" in url and "{y}" in url for url in basemap.tiles)


def test_tencent_counts_rows_from_the_south() -> None:
    basemap = parse_basemap("tencent")
    assert basemap is not None
    assert (basemap.crs, basemap.scheme, len(basemap.tiles)) == ("gcj02", "tms", 4)


def test_tianditu_needs_its_key_and_carries_labels() -> None:
    with pytest.raises(InvalidBasemap, match="WANGGE_BASEMAP_KEY"):
        parse_basemap("tianditu")
    with pytest.raises(InvalidBasemap, match="not a Tianditu key"):
        parse_basemap("tianditu", key="x&y=1")
    basemap = parse_basemap("tianditu", key=KEY)
    assert basemap is not None
    assert basemap.crs == "wgs84"  # CGCS2000: centimetres from WGS-84
    assert all(f"tk={KEY}" in url and "T=vec_w" in url for url in basemap.tiles)
    assert all("T=cva_w" in url for url in basemap.label_tiles)
    assert len(basemap.origins()) == 8


def test_an_xyz_template_with_subdomains_and_rows_from_the_south() -> None:
    basemap = parse_basemap(
        "https://{s}.tiles.example.cn/{z}/{x}/{-y}.png", subdomains="ab", attribution="© city"
    )
    assert basemap is not None
    assert basemap.tiles == (
        "https://a.tiles.example.cn/{z}/{x}/{y}.png",
        "https://b.tiles.example.cn/{z}/{x}/{y}.png",
    )
    assert (basemap.kind, basemap.scheme, basemap.attribution) == ("raster", "tms", "© city")


def test_a_url_without_a_tile_pattern_is_a_style_with_its_extra_origins() -> None:
    basemap = parse_basemap(
        "https://gis.example.cn/styles/city.json", extra_origins=("https://fonts.example.cn",)
    )
    assert basemap is not None
    assert basemap.kind == "style"
    assert basemap.origins() == ("https://fonts.example.cn", "https://gis.example.cn")


@pytest.mark.parametrize(
    ("value", "options", "reason"),
    [
        ("ftp://tiles.example.cn/{z}/{x}/{y}", {}, "neither none"),
        ("bing", {}, "neither none"),
        ("https://tiles.example.cn/{z}/{x}.png", {}, "needs {z}, {x} and {y}"),
        ("https://{s}.example.cn/{z}/{x}/{y}.png", {}, "WANGGE_BASEMAP_SUBDOMAINS"),
        ("https://gis.example.cn/style.json", {"crs": "gcj02"}, "must be raster tiles"),
        ("https://gis.example.cn/style.json", {"extra_origins": ("fonts",)}, "not an origin"),
    ],
)
def test_a_setting_that_cannot_work_is_refused_with_its_reason(
    value: str, options: dict[str, object], reason: str
) -> None:
    with pytest.raises(InvalidBasemap, match=reason):
        parse_basemap(value, **options)  # type: ignore[arg-type]


def test_the_settings_refuse_at_start_what_the_page_could_not_draw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANGGE_BASEMAP", "tianditu")
    monkeypatch.delenv("WANGGE_BASEMAP_KEY", raising=False)
    with pytest.raises(ValidationError, match="WANGGE_BASEMAP_KEY"):
        BasemapSettings(_env_file=None)
    monkeypatch.setenv("WANGGE_BASEMAP_KEY", KEY)
    basemap = BasemapSettings(_env_file=None).basemap_config()
    assert basemap is not None
    assert basemap.name == "tianditu"
