"""Incident photos over HTTP: upload one, put it on an incident, list and download them.

A thin adapter over `geodata.attachments` (what a photo must be, the blob store) and
`geodata.db.attachment_store`. An upload is the image's bytes as the body, its media type
as Content-Type (no multipart: the phone posts the Blob it made, and the size cap applies
while the body is read); what is stored is the image re-encoded without metadata, named
by its SHA-256, which the answer gives as `content_id`. A report names its photos by
these ids (`attachments` of POST /api/v1/incidents); a resolution photo is put on the
incident afterwards. Reading a photo is reading its incident: the same 404 and 403.
"""

import uuid
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from geodata.accounts import Principal, Role
from geodata.attachments import (
    AttachmentConfig,
    AttachmentNotFound,
    BlobStore,
    CleanImage,
    Purpose,
    check_content_id,
    check_may_attach,
    clean_image,
    open_blob_store,
)
from geodata.db import attachment_store
from geodata.db.attachment_store import IncidentPhoto
from geodata.db.incident_store import load_incident, readable_incident
from geodata.events import CONTENT_ID_PATTERN
from geodata.query_limits import PayloadTooLarge
from grid_service.auth import RequiredPrincipal, require_roles
from grid_service.deps import EngineDep, read_capped_body
from grid_service.errors import ErrorBody
from grid_service.routing import add_routes

router = APIRouter(prefix="/api/v1", tags=["attachments"])

IMAGE_TYPES: Final = ("image/jpeg", "image/png", "image/webp")
_EXTENSIONS: Final = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
_BINARY: Final[dict[str, Any]] = {
    kind: {"schema": {"type": "string", "format": "binary"}} for kind in IMAGE_TYPES
}

Writer = Annotated[
    Principal, Depends(require_roles(Role.WORKER, Role.SUPERVISOR, Role.ADMIN, limit_rate=True))
]
IncidentId = Annotated[uuid.UUID, Path(description="the incident_id")]
ContentId = Annotated[
    str, Path(pattern=CONTENT_ID_PATTERN, description="the photo's SHA-256, 64 hex digits")
]

_AUTH_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"model": ErrorBody, "description": "missing_token or invalid_token"},
    403: {"model": ErrorBody, "description": "forbidden, outside_area or worker_mismatch"},
}
_UPLOAD_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_AUTH_ERRORS,
    413: {"model": ErrorBody, "description": "payload_too_large: over the size limit"},
    415: {
        "model": ErrorBody,
        "description": "unsupported_media_type (Content-Type not an image type taken) or "
        "unsupported_image (not a JPEG, PNG or WebP, or not the type declared)",
    },
    422: {"model": ErrorBody, "description": "invalid_image: does not decode, or too many pixels"},
    429: {"model": ErrorBody, "description": "rate_limited: retry after Retry-After seconds"},
}
_READ_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_AUTH_ERRORS,
    404: {"model": ErrorBody, "description": "incident_not_found or attachment_not_found"},
    422: {"model": ErrorBody, "description": "invalid_request: a malformed id"},
}
_ADD_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    **_READ_ERRORS,
    400: {"model": ErrorBody, "description": "bad_request: the body is not JSON"},
    429: {"model": ErrorBody, "description": "rate_limited: retry after Retry-After seconds"},
}


def install_attachments(app: FastAPI, config: AttachmentConfig) -> None:
    """Mount the routes and keep the config and blob store in `app.state`."""
    app.state.attachment_config = config
    app.state.blob_store = open_blob_store(config)
    add_routes(app, router)


async def get_attachment_config(request: Request) -> AttachmentConfig:
    """Dependency: the limits `install_attachments` kept."""
    config: AttachmentConfig = request.app.state.attachment_config
    return config


async def get_blob_store(request: Request) -> BlobStore:
    """Dependency: where the photos' bytes are kept."""
    store: BlobStore = request.app.state.blob_store
    return store


ConfigDep = Annotated[AttachmentConfig, Depends(get_attachment_config)]
BlobStoreDep = Annotated[BlobStore, Depends(get_blob_store)]


class AttachmentPublic(BaseModel):
    """A stored photo."""

    content_id: str = Field(description="SHA-256 of the stored bytes: the photo's name")
    media_type: Literal["image/jpeg", "image/png", "image/webp"]
    size_bytes: int
    width: int
    height: int


class IncidentPhotoPublic(BaseModel):
    """A photo on an incident; type and size are null for one named but never uploaded."""

    content_id: str
    purpose: Literal["report", "resolution"]
    added_by: str | None = Field(description="the reporter, or the account that added it")
    added_at: str
    media_type: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    href: str = Field(description="where to download it (same token)")


class AttachmentAdd(BaseModel):
    """A photo uploaded before, to put on the incident."""

    content_id: str = Field(pattern=CONTENT_ID_PATTERN)
    purpose: Literal["report", "resolution"] = "resolution"


_UPLOAD_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": _BINARY,
    }
}


@router.post(
    "/attachments",
    status_code=201,
    response_model=AttachmentPublic,
    responses=_UPLOAD_ERRORS,
    openapi_extra=_UPLOAD_BODY,
)
async def upload_attachment(
    request: Request,
    engine: EngineDep,
    principal: Writer,
    config: ConfigDep,
    store: BlobStoreDep,
) -> AttachmentPublic:
    """Upload a photo: the body is the image, `Content-Type` image/jpeg, image/png or
    image/webp, at most the size limit (WANGGE_ATTACHMENT_MAX_BYTES).

    The image is stored re-encoded, upright and without metadata (no EXIF: no GPS
    position); `content_id` is the SHA-256 of the stored bytes. Name it in a report's
    `attachments`, or put it on an incident with POST /api/v1/incidents/{id}/attachments.
    The same bytes uploaded again answer the same id and store nothing twice.
    """
    declared = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    body = await read_capped_body(request, config.max_bytes, IMAGE_TYPES)
    image = await run_in_threadpool(clean_image, body, declared)
    if image.size_bytes > config.max_bytes:
        raise PayloadTooLarge(f"{image.size_bytes} bytes once re-encoded, more than the limit")
    await run_in_threadpool(_store, engine, store, image, principal.name)
    return AttachmentPublic(
        content_id=image.content_id,
        media_type=image.media_type,
        size_bytes=image.size_bytes,
        width=image.width,
        height=image.height,
    )


def _store(engine: Engine, store: BlobStore, image: CleanImage, uploaded_by: str) -> None:
    # The bytes first: a row never names bytes that are not there.
    store.put(image.content_id, image.data)
    with engine.begin() as conn:
        attachment_store.record_upload(conn, image, uploaded_by)


def _public(incident_id: uuid.UUID, photo: IncidentPhoto) -> IncidentPhotoPublic:
    return IncidentPhotoPublic(
        content_id=photo.content_id,
        purpose="resolution" if photo.purpose == "resolution" else "report",
        added_by=photo.added_by,
        added_at=photo.added_at.isoformat(),
        media_type=photo.media_type,
        size_bytes=photo.size_bytes,
        width=photo.width,
        height=photo.height,
        href=f"/api/v1/incidents/{incident_id}/attachments/{photo.content_id}",
    )


@router.get(
    "/incidents/{incident_id}/attachments",
    response_model=list[IncidentPhotoPublic],
    responses=_READ_ERRORS,
)
def list_incident_attachments(
    engine: EngineDep, principal: RequiredPrincipal, incident_id: IncidentId
) -> list[IncidentPhotoPublic]:
    """The incident's photos, oldest first: who may read the incident may list them."""
    with engine.connect() as conn:
        readable_incident(conn, incident_id, principal)
        photos = attachment_store.photos_of(conn, incident_id)
    return [_public(incident_id, photo) for photo in photos]


@router.post(
    "/incidents/{incident_id}/attachments",
    status_code=201,
    response_model=list[IncidentPhotoPublic],
    responses=_ADD_ERRORS,
)
def add_incident_attachment(
    engine: EngineDep,
    principal: Writer,
    incident_id: IncidentId,
    addition: Annotated[AttachmentAdd, Body()],
) -> list[IncidentPhotoPublic]:
    """Put an uploaded photo on the incident (a resolution photo, by default); answers the
    incident's photos. The worker who holds the incident, a supervisor of its area or an
    admin may. Errors: 404 `incident_not_found`, or `attachment_not_found` for an id never
    uploaded; 403 as for reading the incident, or `worker_mismatch` for a worker who does
    not hold it."""
    purpose: Purpose = addition.purpose
    with engine.begin() as conn:
        record = load_incident(conn, incident_id)
        check_may_attach(principal, record.state)
        if not attachment_store.is_uploaded(conn, addition.content_id):
            raise AttachmentNotFound(f"no photo {addition.content_id} was uploaded; upload it")
        attachment_store.add_to_incident(
            conn, incident_id, addition.content_id, purpose, principal.name
        )
        photos = attachment_store.photos_of(conn, incident_id)
    return [_public(incident_id, photo) for photo in photos]


@router.get(
    "/incidents/{incident_id}/attachments/{content_id}",
    response_class=Response,
    responses={
        **_READ_ERRORS,
        200: {
            "description": "the photo",
            "content": _BINARY,
        },
    },
)
def download_incident_attachment(
    engine: EngineDep,
    store: BlobStoreDep,
    principal: RequiredPrincipal,
    incident_id: IncidentId,
    content_id: ContentId,
) -> Response:
    """One photo of the incident, as stored. Who may read the incident may download its
    photos: another area's supervisor gets 403 `outside_area`, as for the incident. 404
    `attachment_not_found` when the incident has no such photo or it was never uploaded."""
    check_content_id(content_id)
    with engine.connect() as conn:
        readable_incident(conn, incident_id, principal)
        photo = attachment_store.photo_of(conn, incident_id, content_id)
    if photo is None or photo.media_type is None:
        raise AttachmentNotFound(f"the incident has no stored photo {content_id}")
    data = store.get(content_id)
    extension = _EXTENSIONS.get(photo.media_type, "bin")
    return Response(
        data,
        media_type=photo.media_type,
        headers={
            # Named by its content: these bytes never change. Private: personal data.
            "Cache-Control": "private, max-age=31536000, immutable",
            "ETag": f'"{content_id}"',
            "Content-Disposition": f'inline; filename="{content_id[:16]}.{extension}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
