"""`GET /docs`: Swagger UI with its script, style and icon served by this process.

FastAPI's own /docs and /redoc load their assets from a CDN, which an offline deployment
cannot reach; the app turns them off (`docs_url=None, redoc_url=None`) and calls
`install_docs`. Swagger UI comes from the npm package pinned in
`map_assets/package-lock.json`, copied into `static/vendor/swagger-ui` by
scripts/bootstrap.sh, as MapLibre is for the map. ReDoc is not served.
"""

import logging
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from grid_service.map import STATIC_DIR

logger = logging.getLogger(__name__)

SWAGGER_DIR: Final = STATIC_DIR / "vendor" / "swagger-ui"
SWAGGER_FILES: Final = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")
DOCS_PATH: Final = "/docs"
DOCS_ASSETS_PATH: Final = "/docs/assets"

_MISSING_ASSETS: Final = """<!doctype html><meta charset="utf-8"><title>wangge API docs</title>
<h1>The API documentation's assets are missing</h1>
<p>Swagger UI is installed by <code>./scripts/bootstrap.sh</code> (npm ci in
grid_service/map_assets); run it on this machine, then reload. The API definition itself
is at <a href="{openapi}">{openapi}</a>.</p>"""


def _installed(directory: Path) -> bool:
    return all((directory / name).is_file() for name in SWAGGER_FILES)


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs from local assets; call it once in the app factory."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        if not _installed(SWAGGER_DIR):
            logger.error("GET /docs: %s is incomplete; run scripts/bootstrap.sh", SWAGGER_DIR)
            missing = _MISSING_ASSETS.format(openapi=root + openapi_url)
            return HTMLResponse(missing, status_code=503, headers={"Cache-Control": "no-cache"})
        assets = root + DOCS_ASSETS_PATH
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            oauth2_redirect_url=None,
            # Swagger UI would otherwise send the definition to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Cache-Control"] = "no-cache"
        return page

    # check_dir=False: the app starts without the assets; /docs then says what is missing.
    app.mount(
        DOCS_ASSETS_PATH, StaticFiles(directory=SWAGGER_DIR, check_dir=False), name="docs_assets"
    )
    # FastAPI's own page is off; its attribute still names the docs, for the OGC landing page.
    app.docs_url = DOCS_PATH
