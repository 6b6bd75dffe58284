"""Cross-origin reads: a city's web GIS on another origin may read tiles and features.

Only the origins in `ApiConfig.cors_allow_origins` (WANGGE_CORS_ALLOW_ORIGINS) are
allowed, and only to read; with none configured no CORS header is sent at all, so a
browser keeps other origins out as before. A token travels as `Authorization: Bearer`,
never a cookie, so credentials mode stays off.
"""

from typing import Final

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

ALLOWED_METHODS: Final = ("GET", "HEAD")
ALLOWED_HEADERS: Final = ("Authorization", "If-None-Match", "If-Modified-Since")
"""Beyond the CORS-safelisted ones: the token, and revalidation of tiles and features."""
EXPOSED_HEADERS: Final = ("ETag", "Content-Crs", "Retry-After", "Link")
"""Headers a page's script may read besides the safelisted ones."""
PREFLIGHT_MAX_AGE_S: Final = 600


def install_cors(app: FastAPI, origins: tuple[str, ...]) -> None:
    """Answer preflights and add CORS headers for `origins`; nothing when there are none."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        allow_credentials=False,
        max_age=PREFLIGHT_MAX_AGE_S,
    )
