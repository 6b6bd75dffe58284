"""Admin-only routes: importing boundary files over HTTP, as `wangge dataset import` does."""

import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Final

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from geodata.accounts import Principal, Role
from geodata.dataset.importer import ImportReport, import_boundaries, parse_valid_from
from geodata.db import migrate
from grid_service.auth import require_roles

MAX_UPLOAD_BYTES: Final = 256 * 1024 * 1024
"""Largest boundary file accepted; the city's reference GeoPackage is about 1.3 MB."""

_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_LENGTH: Final = 255

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

AdminWriter = Annotated[Principal, Depends(require_roles(Role.ADMIN, limit_rate=True))]


def _valid_from(value: object) -> object:
    return parse_valid_from(value) if isinstance(value, str) else value


ValidFrom = Annotated[datetime, BeforeValidator(_valid_from)]
"""A date (local midnight) or an ISO 8601 time, read as the CLI's `--valid-from` reads it;
else 422 invalid_request."""


class LayerCountsPublic(BaseModel):
    """What the import did, or would do in a dry run, to one layer."""

    inserted: int
    updated: int
    unchanged: int
    new_versions: int
    repaired: int


class BoundaryImportPublic(BaseModel):
    """The report of an accepted import (nothing was written when `dry_run`)."""

    source: str = Field(description="the uploaded file's name")
    dry_run: bool
    valid_from: datetime
    layers: dict[str, LayerCountsPublic]
    repairs: list[str]
    skipped_layers: list[str] = Field(description="layers of the file not recognised")


def _too_large() -> HTTPException:
    return HTTPException(
        413,
        detail={
            "code": "payload_too_large",
            "detail": f"a boundary file is at most {MAX_UPLOAD_BYTES} bytes",
        },
    )


def _missing_file() -> HTTPException:
    return HTTPException(
        422,
        detail={
            "code": "invalid_request",
            "detail": "send the boundary file as multipart/form-data field `file`",
        },
    )


def _client_name(filename: str | None) -> str:
    """The uploaded file's name as the client gave it, without any directory part or
    control character (PostgreSQL's text holds no NUL), as problems and reports show it."""
    base = re.split(r"[/\\]", filename or "")[-1]
    name = _CONTROL_CHARACTERS.sub("", base).strip()[:MAX_NAME_LENGTH]
    return name or "upload"


def _safe_name(client_name: str) -> str:
    # The name saved under, in a fresh directory: ASCII, so that no reader trips on it; it
    # keeps the suffix, which picks the format, and is never a path elsewhere.
    name = _UNSAFE_NAME_CHARACTERS.sub("_", client_name).lstrip(".")
    return name or "upload"


def _import_upload(
    engine: Engine,
    file: BinaryIO,
    client_name: str,
    *,
    dry_run: bool,
    repair: bool,
    valid_from: datetime | None,
) -> ImportReport:
    migrate.require_current_schema(engine)
    with tempfile.TemporaryDirectory(prefix="wangge-upload-") as directory:
        path = Path(directory) / _safe_name(client_name)
        with path.open("wb") as out:
            shutil.copyfileobj(file, out)
        return import_boundaries(
            engine, path, dry_run=dry_run, repair=repair, valid_from=valid_from, name=client_name
        )


_MULTIPART_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "GeoJSON, Shapefile (.shp or .zip), GeoPackage "
                            "or FlatGeobuf; the name's suffix says which",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/boundaries",
    response_model=BoundaryImportPublic,
    openapi_extra=_MULTIPART_BODY,
    responses={
        400: {"description": "bad_request: a malformed multipart body, or fields besides `file`"},
        401: {"description": "missing_token or invalid_token"},
        403: {"description": "forbidden: an admin's token only"},
        413: {"description": "payload_too_large"},
        422: {
            "description": "import_refused, with `problems`: nothing was written; "
            "invalid_request: a `valid_from` that is not a date or time"
        },
        429: {"description": "rate_limited"},
    },
)
async def post_boundaries(
    request: Request,
    _admin: AdminWriter,
    dry_run: Annotated[bool, Query(description="validate and report only")] = False,
    repair: Annotated[
        bool, Query(description="repair rings make_valid fixes within 0.1 % of their area")
    ] = False,
    valid_from: Annotated[
        ValidFrom | None,
        Query(
            description="when the new boundaries and assignments take effect, as the city "
            "decided: a date (2024-07-01, Asia/Shanghai midnight) or an ISO 8601 time; may "
            "be in the future (default: now; the reference date on a first import)"
        ),
    ] = None,
) -> BoundaryImportPublic:
    """Validate and import a boundary file, all or nothing (admins only).

    A `valid_from` in the future loads a redrawing today that takes effect then: until
    that instant locate, the consumers and OGC answer the versions in force before it.
    200 with the counts per layer; on refusal 422 `import_refused` with `problems`, each
    with its layer, feature, reason and detail, and nothing written. The file is named by
    the name it was uploaded with; its suffix says its format.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise _too_large()
    async with request.form(max_files=1, max_fields=0) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _missing_file()
        if upload.size is not None and upload.size > MAX_UPLOAD_BYTES:
            raise _too_large()
        name = _client_name(upload.filename)
        report = await run_in_threadpool(
            _import_upload,
            request.app.state.engine,
            upload.file,
            name,
            dry_run=dry_run,
            repair=repair,
            valid_from=valid_from,
        )
    summary = report.summary()
    return BoundaryImportPublic.model_validate({**summary, "source": name})
