"""`GET /app`: the grid workers' phone app, and `GET /api/v1/workers/me`, what it opens on.

The app is static files in `grid_service/static/app` (HTML, its scripts, a web app
manifest and a service worker), served by this process, nothing from outside. They are
read once and kept in memory with their gzip form: the app's first load is over a
phone's slow network, where every byte counts, and a revalidation (`If-None-Match`) costs
no body. The page holds no data and no secret: the worker signs in with a name and a
password (POST /api/v1/session; the session cookie is HttpOnly, so the page never sees
it, and every request says X-Requested-With), or, for trackers and tests, pastes or
scans a token once, which the page keeps in the browser (localStorage) and sends in
headers only. A 401 while sending the queue (the session expired offline) asks for a
sign-in and keeps the queue.

`/api/v1/workers/me` answers, for a worker's session or token, in one round trip what the
app draws first: who the worker is, the boundaries of its grids now, and this week's
patrol status in each, as of now (the compliance read supervisors get, for the worker's
own pairs).
"""

import gzip
import hashlib
import logging
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.accounts import Principal, Role
from geodata.categories import CATEGORY_NAMES_ZH
from geodata.compliance import ComplianceConfig, IsoWeek
from geodata.compliance.report import WorkerCompliance, parse_week
from geodata.db.compliance_read import compliance_report
from geodata.db.grid_cache import GridSnapshot
from geodata.errors import GridNotFound
from geodata.events import ComplianceStatus
from grid_service.auth import require_roles
from grid_service.compliance import ComplianceConfigDep
from grid_service.deps import EngineDep
from grid_service.errors import ErrorBody
from grid_service.grids import GridsDep
from grid_service.routing import add_routes

logger = logging.getLogger(__name__)

APP_DIR: Final = Path(__file__).parent / "static" / "app"

# Everything from this origin; a photo preview is a blob: URL, the map an inline SVG.
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; worker-src 'self'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
        "manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("text/javascript", ".js")


@dataclass(frozen=True, slots=True)
class AppFile:
    """One file of the app as served: its bytes, their gzip form and their ETag."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str


def _served(body: bytes, media_type: str) -> AppFile:
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    # mtime=0: the same bytes give the same gzip on every start.
    return AppFile(body, gzip.compress(body, compresslevel=9, mtime=0), media_type, etag)


def load_app_files(directory: Path = APP_DIR) -> dict[str, AppFile]:
    """Every file of the app by its name under /app/, plus the categories it offers."""
    files: dict[str, AppFile] = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if media_type.startswith("text/") or media_type.endswith(("json", "javascript")):
                media_type += "; charset=utf-8"
            files[path.relative_to(directory).as_posix()] = _served(path.read_bytes(), media_type)
    files["categories.json"] = _served(_categories_json(), "application/json")
    return files


def _categories_json() -> bytes:
    # The one list of categories (geodata.categories), with an English label made from
    # the code, for the report form.
    import json

    categories = [
        {"code": code, "zh": name, "en": code.split(".", 1)[1].replace("_", " ")}
        for code, name in CATEGORY_NAMES_ZH.items()
    ]
    return json.dumps(categories, ensure_ascii=False, separators=(",", ":")).encode()


def _answer(request: Request, served: AppFile) -> Response:
    headers = {
        **_PAGE_HEADERS,
        "ETag": served.etag,
        # Revalidated on every load online (a 304 costs no body); offline the service
        # worker answers from its cache.
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
    }
    if served.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(served.gzipped, media_type=served.media_type, headers=headers)
    return Response(served.body, media_type=served.media_type, headers=headers)


page_router = APIRouter(include_in_schema=False)


@page_router.get("/app")
def app_root() -> RedirectResponse:
    """The app lives under /app/, the scope of its service worker."""
    return RedirectResponse("/app/", status_code=308)


@page_router.get("/app/")
def app_page(request: Request) -> Response:
    """The workers' app (HTML)."""
    return _answer(request, request.app.state.worker_app_files["index.html"])


@page_router.get("/app/{name:path}")
def app_file(request: Request, name: str) -> Response:
    """One of the app's files: scripts, styles, icons, manifest, service worker."""
    files: dict[str, AppFile] = request.app.state.worker_app_files
    served = files.get(name)
    if served is None:
        return Response(
            b'{"code":"not_found","detail":"no such file of the app"}',
            status_code=404,
            media_type="application/json",
        )
    return _answer(request, served)


# --------------------------------------------------------------------------- the worker

router = APIRouter(prefix="/api/v1/workers", tags=["compliance"])
WorkerCaller = Annotated[Principal, Depends(require_roles(Role.WORKER))]


class WeekStatusPublic(BaseModel):
    """The worker's week in one grid as of now, as supervisors read it."""

    required: int = Field(description="counted patrols owed this week")
    counted: int = Field(description="counted patrols so far (at most 1 a day)")
    status: ComplianceStatus
    counted_days: list[str] = Field(description="local days with a counted patrol")


class MyGridPublic(BaseModel):
    """A grid the worker is assigned to now: names, boundary, and the week's status."""

    grid_code: str
    name: str
    community_name: str
    street_name: str
    district_name: str
    geometry: dict[str, Any] = Field(description="GeoJSON MultiPolygon, EPSG:4326")
    week: WeekStatusPublic | None = Field(description="null when not assigned in the week")


class MePublic(BaseModel):
    """The calling worker, its grids now and its week."""

    worker_id: str
    name: str
    week: str
    as_of: datetime
    weekly_required: int = Field(description="the rule: counted patrols a whole week owes")
    grids: list[MyGridPublic]


_ME_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token, invalid_token or session_expired"},
    403: {"model": ErrorBody, "description": "forbidden: not a worker's account"},
    422: {"model": ErrorBody, "description": "invalid_week"},
}


@router.get("/me", response_model=MePublic, responses=_ME_ERRORS)
async def read_me(
    engine: EngineDep,
    grids: GridsDep,
    config: ComplianceConfigDep,
    principal: WorkerCaller,
    week: Annotated[
        str | None,
        Query(description="ISO week such as 2020-W37; default: this week", examples=["2020-W37"]),
    ] = None,
) -> MePublic:
    """The calling worker (a worker's session or token): its id and name, the grids it is
    assigned to now with their boundaries, and its patrol status in each for the week as of
    now (required, counted, met / on_track / at_risk / missed). Its patrols, with why each
    counted or not, are at /api/v1/workers/{id}/patrols."""
    assert principal.worker_id is not None  # a worker principal always has one
    now = datetime.now(UTC)
    chosen = parse_week(week) if week is not None else IsoWeek.week_of(now, config.tz)
    mine = _grids_now(grids, principal.worker_id, now)
    statuses = await run_in_threadpool(
        _statuses, engine, principal.worker_id, [g.grid_code for g in mine], chosen, now, config
    )
    return MePublic(
        worker_id=principal.worker_id,
        name=grids.roster.name_of(principal.worker_id) or principal.name,
        week=str(chosen),
        as_of=now.astimezone(config.tz),
        weekly_required=config.weekly_required,
        grids=[g.model_copy(update={"week": statuses.get(g.grid_code)}) for g in mine],
    )


def _grids_now(snapshot: GridSnapshot, worker_id: str, now: datetime) -> list[MyGridPublic]:
    codes = dict.fromkeys(
        p.grid_code for p in snapshot.roster.periods_of(worker_id) if p.covers(now)
    )
    found: list[MyGridPublic] = []
    for code in sorted(codes):
        try:
            detail = snapshot.detail(code, now)
        except GridNotFound:  # assigned to a grid whose boundary has ended: nothing to draw
            logger.warning(
                "worker %s is assigned to %s, which has no boundary now", worker_id, code
            )
            continue
        found.append(
            MyGridPublic(
                grid_code=code,
                name=detail.grid.name,
                community_name=detail.community_name,
                street_name=detail.street_name,
                district_name=detail.district_name,
                geometry=detail.grid.geometry,
                week=None,
            )
        )
    return found


def _statuses(
    engine: Engine,
    worker_id: str,
    grid_codes: list[str],
    week: IsoWeek,
    now: datetime,
    config: ComplianceConfig,
) -> dict[str, WeekStatusPublic]:
    statuses: dict[str, WeekStatusPublic] = {}
    for code in grid_codes:
        report = compliance_report(engine, week, now, level="worker", code=code, config=config)
        for item in report.items:
            if isinstance(item, WorkerCompliance) and item.worker_id == worker_id:
                statuses[code] = WeekStatusPublic(
                    required=item.required,
                    counted=item.counted,
                    status=item.status,
                    counted_days=[day.isoformat() for day in item.counted_days],
                )
    return statuses


def install_worker_app(app: FastAPI) -> None:
    """Add `/app`, its files and `/api/v1/workers/me`; call it once in the app factory."""
    app.state.worker_app_files = load_app_files()
    add_routes(app, router)
    add_routes(app, page_router)
