"""Incident photos: what is stored is the image re-encoded upright without metadata, named
by its SHA-256; what is refused, and who may add a photo to an incident."""

import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.ExifTags import IFD

from geodata.accounts import OutsideArea, Principal, Role, WorkerMismatch
from geodata.attachments import (
    MAX_PIXELS,
    AttachmentNotFound,
    InvalidContentId,
    InvalidImage,
    LocalBlobStore,
    UnsupportedImage,
    check_may_attach,
    clean_image,
    content_id_of,
)
from geodata.events import (
    INCIDENT_EXAMPLE,
    MAX_REPORT_ATTACHMENTS,
    EventRefused,
    RefusalReason,
    parse_incident,
)
from geodata.incidents import IncidentState, Status

GPS = {1: "N", 2: (34.0, 22.0, 1.5), 3: "E", 4: (107.0, 9.0, 2.0)}
NOW = datetime(2020, 9, 7, 12, 0, tzinfo=UTC)


def photo(
    size: tuple[int, int] = (300, 200), kind: str = "JPEG", orientation: int | None = None
) -> bytes:
    """A photo as a phone's camera writes it: EXIF with GPS, a maker, maybe a rotation."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((0, 0, 255), (0, 0, 40, 40))  # a corner to follow through the rotation
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[IFD.GPSInfo] = GPS
    if orientation is not None:
        exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, kind, exif=exif)
    return out.getvalue()


def test_a_photo_is_stored_without_any_exif_and_so_without_its_gps_position() -> None:
    original = photo()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(IFD.GPSInfo)  # the premise
    cleaned = clean_image(original, "image/jpeg")
    stored = Image.open(io.BytesIO(cleaned.data))
    assert stored.format == "JPEG"
    assert dict(stored.getexif()) == {}
    assert "exif" not in stored.info
    assert cleaned.content_id == content_id_of(cleaned.data)
    assert (cleaned.width, cleaned.height) == (300, 200)


@pytest.mark.parametrize("kind", ["PNG", "WEBP"])
def test_png_and_webp_keep_their_type_and_lose_their_exif(kind: str) -> None:
    cleaned = clean_image(photo(kind=kind))
    stored = Image.open(io.BytesIO(cleaned.data))
    assert stored.format == kind
    assert cleaned.media_type == f"image/{kind.lower()}"
    assert dict(stored.getexif()) == {}


def test_a_rotated_photo_is_stored_upright() -> None:
    # Orientation 6: the camera held turned; the viewer rotates 90° clockwise.
    cleaned = clean_image(photo(orientation=6))
    stored = Image.open(io.BytesIO(cleaned.data))
    assert stored.size == (200, 300)
    # The blue corner moved to the top right.
    red, _green, blue = stored.convert("RGB").getpixel((180, 20))  # type: ignore[misc]
    assert blue > 150
    assert red < 100


def test_the_same_photo_uploaded_twice_gets_the_same_id() -> None:
    original = photo()
    assert clean_image(original).content_id == clean_image(original).content_id


def test_what_is_not_a_jpeg_png_or_webp_is_refused() -> None:
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    with pytest.raises(UnsupportedImage):
        clean_image(gif.getvalue())
    with pytest.raises(UnsupportedImage):
        clean_image(b"%PDF-1.4 not an image")


def test_a_photo_declared_as_another_type_is_refused() -> None:
    with pytest.raises(UnsupportedImage, match="declared image/png"):
        clean_image(photo(), "image/png")


def test_a_truncated_photo_is_refused() -> None:
    with pytest.raises(InvalidImage):
        clean_image(photo(size=(800, 600))[:2000])


def test_an_image_of_too_many_pixels_is_refused_before_it_is_decoded() -> None:
    # A tiny PNG that claims a huge canvas: refused from its header.
    side = int(MAX_PIXELS**0.5) + 100
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG")
    assert len(out.getvalue()) < 2_000_000
    with pytest.raises(InvalidImage):
        clean_image(out.getvalue())


def test_the_local_store_keeps_bytes_by_content_id_and_writes_once(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = clean_image(photo()).data
    content_id = content_id_of(data)
    store.put(content_id, data)
    store.put(content_id, data)
    assert store.get(content_id) == data
    assert store.path_of(content_id) == tmp_path / content_id[:2] / content_id
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [content_id]
    with pytest.raises(AttachmentNotFound):
        store.get("0" * 64)
    with pytest.raises(InvalidContentId):
        store.get("../../etc/passwd")


def _state(assignee: str | None) -> IncidentState:
    return IncidentState(
        status=Status.IN_PROGRESS,
        version=3,
        assignee=assignee,
        grid_code="610302001001001",
        community_code="610302001001",
        escalated_to=None,
        source="worker",
        reporter_id="W00002",
    )


def _principal(role: Role, area: str | None = None, worker: str | None = None) -> Principal:
    return Principal(1, 1, "someone", role, area_prefix=area, worker_id=worker)


def test_the_worker_holding_an_incident_may_add_a_photo_and_its_reporter_may_not() -> None:
    check_may_attach(_principal(Role.WORKER, worker="W00001"), _state("W00001"))
    with pytest.raises(WorkerMismatch):
        check_may_attach(_principal(Role.WORKER, worker="W00002"), _state("W00001"))
    check_may_attach(_principal(Role.SUPERVISOR, area="610302"), _state("W00001"))
    with pytest.raises(OutsideArea):  # a supervisor of another area: as for reading
        check_may_attach(_principal(Role.SUPERVISOR, area="610303"), _state("W00001"))


def _report(**fields: Any) -> bytes:
    return json.dumps({**INCIDENT_EXAMPLE, "event_id": str(uuid.uuid4()), **fields}).encode()


def test_a_report_names_up_to_three_photos_by_content_id() -> None:
    ids = [content_id_of(bytes([n])) for n in range(MAX_REPORT_ATTACHMENTS)]
    assert parse_incident(_report(attachments=ids), now=NOW).attachments == ids
    assert parse_incident(_report(), now=NOW).attachments is None
    with pytest.raises(EventRefused) as too_many:
        parse_incident(_report(attachments=[*ids, content_id_of(b"x")]), now=NOW)
    assert too_many.value.reason is RefusalReason.INVALID_FIELD
    with pytest.raises(EventRefused) as not_an_id:
        parse_incident(_report(attachments=["photo.jpg"]), now=NOW)
    assert not_an_id.value.reason is RefusalReason.INVALID_FIELD
