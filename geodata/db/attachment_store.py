"""Attachments in PostGIS: what was uploaded, and which incident each photo is on.

The bytes are in a `geodata.attachments.BlobStore`; these tables say what they are and
where they belong. The API records uploads and resolution photos through a SQLAlchemy
Connection; the incident consumer links a report's photos through its psycopg
connection, in the transaction that stores the incident. Nothing here commits.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from geodata.attachments import CleanImage, Purpose
from geodata.db.models import Attachment, IncidentAttachment


@dataclass(frozen=True, slots=True)
class IncidentPhoto:
    """A photo on an incident; `media_type` and sizes are None when it was never uploaded."""

    content_id: str
    purpose: str
    added_by: str | None
    added_at: datetime
    media_type: str | None
    size_bytes: int | None
    width: int | None
    height: int | None


def record_upload(conn: Connection, image: CleanImage, uploaded_by: str) -> None:
    """Remember an upload's type and size; the first uploader of the same bytes stays."""
    conn.execute(
        insert(Attachment)
        .values(
            content_id=image.content_id,
            media_type=image.media_type,
            size_bytes=image.size_bytes,
            width=image.width,
            height=image.height,
            uploaded_by=uploaded_by,
        )
        .on_conflict_do_nothing(index_elements=[Attachment.content_id])
    )


def add_to_incident(
    conn: Connection, incident_id: uuid.UUID, content_id: str, purpose: Purpose, added_by: str
) -> None:
    """Put a photo on an incident; adding the same one again changes nothing."""
    conn.execute(
        insert(IncidentAttachment)
        .values(incident_id=incident_id, content_id=content_id, purpose=purpose, added_by=added_by)
        .on_conflict_do_nothing(
            index_elements=[IncidentAttachment.incident_id, IncidentAttachment.content_id]
        )
    )


def is_uploaded(conn: Connection, content_id: str) -> bool:
    """Whether these bytes were uploaded here."""
    found = conn.execute(select(Attachment.content_id).where(Attachment.content_id == content_id))
    return found.first() is not None


def photos_of(conn: Connection, incident_id: uuid.UUID) -> list[IncidentPhoto]:
    """The incident's photos, oldest first (a report's in the order it named them)."""
    rows = conn.execute(
        select(
            IncidentAttachment.content_id,
            IncidentAttachment.purpose,
            IncidentAttachment.added_by,
            IncidentAttachment.added_at,
            Attachment.media_type,
            Attachment.size_bytes,
            Attachment.width,
            Attachment.height,
        )
        .outerjoin(Attachment, Attachment.content_id == IncidentAttachment.content_id)
        .where(IncidentAttachment.incident_id == incident_id)
        .order_by(IncidentAttachment.added_at, IncidentAttachment.content_id)
    ).all()
    return [IncidentPhoto(*row) for row in rows]


def photo_of(conn: Connection, incident_id: uuid.UUID, content_id: str) -> IncidentPhoto | None:
    """One photo of the incident, None when the incident has no such photo."""
    for photo in photos_of(conn, incident_id):
        if photo.content_id == content_id:
            return photo
    return None


def link_report_photos(
    conn: psycopg.Connection, reports: Iterable[tuple[uuid.UUID, str | None, list[str]]]
) -> None:
    """Put each newly stored report's photos on its incident: (incident_id, reporter,
    content ids). For the consumer, in the transaction that stores the incidents."""
    rows = [
        (incident_id, content_id, reporter, position)
        for incident_id, reporter, content_ids in reports
        for position, content_id in enumerate(content_ids)
    ]
    if not rows:
        return
    with conn.cursor() as cursor:
        # One clock for the report's photos, a microsecond apart, so they list in the
        # order the report named them.
        cursor.executemany(
            "INSERT INTO incident_attachments (incident_id, content_id, purpose, added_by,"
            " added_at) VALUES (%s, %s, 'report', %s,"
            " now() + make_interval(secs => %s * 0.000001))"
            " ON CONFLICT DO NOTHING",
            rows,
        )
