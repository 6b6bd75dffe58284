"""The map's basemap: none, any XYZ raster or vector style URL, or a Chinese provider.

`parse_basemap` turns the setting (WANGGE_BASEMAP and its companions) into a `Basemap`
that the map's config endpoint hands to the page, and whose origins the page's content
security policy allows. Providers whose tiles are in GCJ-02 (AutoNavi/Gaode, Tencent) are
marked so; the page moves them onto our WGS-84 data (geodata.crs's conversion, sampled by
geodata.gcj02; docs/BASEMAP.md).
Tianditu's tiles are in CGCS2000, which differs from WGS-84 by centimetres: drawn as is.
"""

import re
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

Crs = Literal["wgs84", "gcj02"]


class InvalidBasemap(ValueError):
    """The basemap setting names no provider and is no usable URL."""


@dataclass(frozen=True)
class Basemap:
    """What the map draws under the grids, as the page needs it."""

    #: `raster`: XYZ tiles; `style`: a MapLibre style document whose layers go underneath.
    kind: Literal["raster", "style"]
    name: str
    crs: Crs = "wgs84"
    #: Tile URL templates ({z}, {x}, {y}); several spread the load over a provider's hosts.
    tiles: tuple[str, ...] = ()
    #: A second raster layer drawn over the first (Tianditu's labels), same scheme.
    label_tiles: tuple[str, ...] = ()
    #: `tms`: the row counts from the south (Tencent).
    scheme: Literal["xyz", "tms"] = "xyz"
    max_zoom: int = 18
    attribution: str = ""
    style_url: str | None = None
    #: More origins the page may fetch from (a style's tiles, glyphs and sprites).
    extra_origins: tuple[str, ...] = field(default=())

    def origins(self) -> tuple[str, ...]:
        """Every scheme://host[:port] the page fetches the basemap from, sorted."""
        urls = [*self.tiles, *self.label_tiles, *([self.style_url] if self.style_url else [])]
        return tuple(sorted({origin_of(url) for url in urls} | set(self.extra_origins)))


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL or URL template."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


_AMAP_ATTRIBUTION: Final = "© 高德地图 AutoNavi"
_TENCENT_ATTRIBUTION: Final = "© 腾讯地图 Tencent"
_TIANDITU_ATTRIBUTION: Final = "© 天地图 Tianditu (国家地理信息公共服务平台)"
_TIANDITU: Final = (
    "https://t{s}.tianditu.gov.cn/DataServer?T={layer}&x={{x}}&y={{y}}&l={{z}}&tk={key}"
)


def _spread(template: str, subdomains: str) -> tuple[str, ...]:
    return (
        tuple(template.replace("{s}", s) for s in subdomains) if "{s}" in template else (template,)
    )


def _tianditu(name: str, layer: str, labels: str, key: str | None) -> Basemap:
    if not key:
        raise InvalidBasemap(
            f"{name} needs a Tianditu browser key in WANGGE_BASEMAP_KEY (console.tianditu.gov.cn)"
        )
    if not re.fullmatch(r"[0-9A-Za-z]{16,64}", key):
        raise InvalidBasemap(
            "WANGGE_BASEMAP_KEY is not a Tianditu key (16 to 64 letters and digits)"
        )
    return Basemap(
        "raster",
        name,
        tiles=_spread(_TIANDITU.format(layer=layer, key=key, s="{s}"), "01234567"),
        label_tiles=_spread(_TIANDITU.format(layer=labels, key=key, s="{s}"), "01234567"),
        attribution=_TIANDITU_ATTRIBUTION,
    )


def _provider(name: str, key: str | None) -> Basemap | None:
    amap = "https://{host}0{s}.is.autonavi.com/appmaptile?{query}&x={{x}}&y={{y}}&z={{z}}"
    if name in ("amap", "gaode"):
        template = amap.format(host="webrd", s="{s}", query="lang=zh_cn&size=1&scale=1&style=8")
        return Basemap(
            "raster", "amap", "gcj02", _spread(template, "1234"), attribution=_AMAP_ATTRIBUTION
        )
    if name in ("amap-satellite", "gaode-satellite"):
        template = amap.format(host="webst", s="{s}", query="style=6")
        return Basemap(
            "raster",
            "amap-satellite",
            "gcj02",
            _spread(template, "1234"),
            attribution=_AMAP_ATTRIBUTION,
        )
    if name == "tencent":
        # Tencent counts tile rows from the south (TMS).
        template = "https://rt{s}.map.gtimg.com/tile?z={z}&x={x}&y={y}&type=vector&styleid=3"
        return Basemap(
            "raster",
            "tencent",
            "gcj02",
            _spread(template, "0123"),
            scheme="tms",
            attribution=_TENCENT_ATTRIBUTION,
        )
    if name == "tianditu":
        return _tianditu(name, "vec_w", "cva_w", key)
    if name == "tianditu-satellite":
        return _tianditu(name, "img_w", "cia_w", key)
    return None


PROVIDERS: Final = ("amap", "amap-satellite", "tencent", "tianditu", "tianditu-satellite")
"""The named providers (gaode and gaode-satellite are the same as amap's)."""


def parse_basemap(
    value: str,
    *,
    key: str | None = None,
    crs: Crs = "wgs84",
    attribution: str = "",
    subdomains: str = "",
    extra_origins: tuple[str, ...] = (),
) -> Basemap | None:
    """The basemap a setting asks for; None for `none` (or empty): nothing from outside.

    `value` is a provider's name, an http(s) XYZ template with {z}, {x} and {y} ({-y} for
    rows counted from the south, {s} for one of `subdomains`), or a style document's URL.
    `crs`, `attribution` and `extra_origins` apply to URLs; a provider has its own.
    """
    value = value.strip()
    if value.lower() in ("", "none", "off"):
        return None
    provider = _provider(value.lower(), key)
    if provider is not None:
        return provider
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise InvalidBasemap(
            f"{value!r} is neither none, a provider ({', '.join(PROVIDERS)}) nor an http(s) URL"
        )
    if "{s}" in parts.netloc and not subdomains:
        raise InvalidBasemap("a template with {s} needs WANGGE_BASEMAP_SUBDOMAINS, e.g. abc")
    for origin in extra_origins:
        if not re.fullmatch(r"https?://[^/?#\s]+", origin):
            raise InvalidBasemap(f"{origin!r} is not an origin such as https://tiles.example.cn")
    if "{z}" not in value:
        if crs == "gcj02":
            raise InvalidBasemap("a GCJ-02 basemap must be raster tiles: a style is drawn as is")
        return Basemap(
            "style", "style", style_url=value, attribution=attribution, extra_origins=extra_origins
        )
    if "{x}" not in value or ("{y}" not in value and "{-y}" not in value):
        raise InvalidBasemap("an XYZ template needs {z}, {x} and {y} (or {-y})")
    tms = "{-y}" in value
    return Basemap(
        "raster",
        "custom",
        crs,
        _spread(value.replace("{-y}", "{y}"), subdomains),
        scheme="tms" if tms else "xyz",
        attribution=attribution,
        extra_origins=extra_origins,
    )
