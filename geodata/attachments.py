"""Incident photos: what an upload must be, how it is cleaned, and where its bytes are kept.

An attachment is named by its content: the SHA-256 of the bytes as stored (lowercase hex),
so a retried upload stores nothing twice and a report can name its photos before anyone
reads them. What is stored is never what was posted: the image is decoded (JPEG, PNG or
WebP only, within a size and a pixel limit), turned upright by its EXIF orientation, and
encoded again without any metadata, so no GPS position (nor camera serial, nor time)
leaves the phone's report through its photo. The bytes go to a `BlobStore`: a local
directory (`LocalBlobStore`) by default, or an S3-compatible bucket
(`geodata.s3_store.S3BlobStore`) when the config names one; `open_blob_store` chooses.

Pure apart from `LocalBlobStore`'s file I/O: no web framework, no Kafka.
"""

import hashlib
import io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol

from PIL import Image, ImageOps, UnidentifiedImageError

from geodata.accounts import Principal, Role, WorkerMismatch
from geodata.errors import WanggeError
from geodata.events import CONTENT_ID_PATTERN
from geodata.incidents import IncidentState, check_readable

if TYPE_CHECKING:
    from geodata.s3_store import S3Location

_CONTENT_ID: Final = re.compile(CONTENT_ID_PATTERN)

DEFAULT_MAX_BYTES: Final = 8 * 2**20
"""Largest upload by default: a phone's photo resized to 1600 px is well under 1 MiB, a
camera's original a few MiB."""

MAX_PIXELS: Final = 40_000_000
"""Most pixels an image may decode to (a 48 MP phone sensor bins to 12 MP): a small file
that would inflate to gigabytes in memory (a decompression bomb) is refused unread."""

JPEG_QUALITY: Final = 88

MediaType = Literal["image/jpeg", "image/png", "image/webp"]
MEDIA_TYPES: Final[dict[str, MediaType]] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
}
"""Pillow's format name to the media type it is stored and served as."""

Purpose = Literal["report", "resolution"]
"""Why a photo is on an incident: it came with the report, or it shows the fix."""


class AttachmentNotFound(WanggeError):
    """No such attachment on this incident, or its bytes are not stored."""

    code = "attachment_not_found"


class UnsupportedImage(WanggeError):
    """An upload that is not a JPEG, PNG or WebP image (or declares another type)."""

    code = "unsupported_image"


class InvalidImage(WanggeError):
    """An upload declared as an image that does not decode, or is too many pixels."""

    code = "invalid_image"


class InvalidContentId(WanggeError):
    """A content id that is not 64 lowercase hex digits."""

    code = "invalid_content_id"


@dataclass(frozen=True, slots=True)
class AttachmentConfig:
    """Where the API keeps photos and how large an upload may be."""

    directory: Path
    max_bytes: int = DEFAULT_MAX_BYTES
    s3: "S3Location | None" = None
    """An S3-compatible bucket to keep the bytes in instead of `directory`."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")


@dataclass(frozen=True, slots=True)
class CleanImage:
    """An upload as it will be stored: re-encoded bytes, their id, type and size."""

    content_id: str
    media_type: MediaType
    data: bytes
    width: int
    height: int

    @property
    def size_bytes(self) -> int:
        """The stored size."""
        return len(self.data)


def content_id_of(data: bytes) -> str:
    """The content id of stored bytes."""
    return hashlib.sha256(data).hexdigest()


def check_content_id(value: str) -> str:
    """`value` if it is a content id, else InvalidContentId."""
    if _CONTENT_ID.fullmatch(value) is None:
        raise InvalidContentId(f"a content id is 64 lowercase hex digits, got {value[:80]!r}")
    return value


def clean_image(data: bytes, declared_type: str | None = None) -> CleanImage:
    """Decode an upload and encode it again upright and without metadata (EXIF, XMP, ICC
    text): what is stored. UnsupportedImage or InvalidImage when it cannot be."""
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice it; refuse from the limit on.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=list(MEDIA_TYPES)) as image:
                media_type = MEDIA_TYPES[str(image.format)]
                if declared_type is not None and declared_type != media_type:
                    raise UnsupportedImage(
                        f"the body is {media_type}, but was declared {declared_type}"
                    )
                if image.width * image.height > MAX_PIXELS:
                    raise InvalidImage(
                        f"{image.width}x{image.height} is more than {MAX_PIXELS:,} pixels"
                    )
                upright = ImageOps.exif_transpose(image)
                upright.load()
        except WanggeError:
            raise
        except UnidentifiedImageError:
            raise UnsupportedImage("the body is not a JPEG, PNG or WebP image") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise InvalidImage(f"too many pixels: {exc}") from None
        except Exception as exc:
            # Truncated or crafted data: Pillow's decoders raise OSError, SyntaxError,
            # ValueError, EOFError, struct.error... all of them say the bytes are bad.
            raise InvalidImage(f"the image does not decode: {type(exc).__name__}") from None
    stored = _encode(upright, media_type)
    return CleanImage(content_id_of(stored), media_type, stored, upright.width, upright.height)


def _encode(image: Image.Image, media_type: MediaType) -> bytes:
    # A fresh image keeps no `info` (EXIF, XMP, comments): only pixels are written.
    pixels = Image.new(image.mode, image.size)
    pixels.frombytes(image.tobytes())
    if image.mode == "P":
        pixels.putpalette(image.getpalette() or [])
    out = io.BytesIO()
    if media_type == "image/jpeg":
        if pixels.mode not in ("RGB", "L"):
            pixels = pixels.convert("RGB")
        pixels.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif media_type == "image/png":
        # A palette's transparent index is pixels, not metadata: it is kept.
        transparency = image.info.get("transparency")
        extra = {} if transparency is None else {"transparency": transparency}
        pixels.save(out, "PNG", optimize=True, **extra)
    else:
        pixels.save(out, "WEBP", quality=JPEG_QUALITY)
    return out.getvalue()


def check_may_attach(principal: Principal, state: IncidentState) -> None:
    """Raise unless the caller may add a photo to the incident: it must be able to read it,
    and a worker must hold it (a reporter who does not hold it reports anew instead)."""
    check_readable(principal, state)
    if principal.role is Role.WORKER and state.assignee != principal.worker_id:
        raise WorkerMismatch(f"{principal.worker_id} does not hold this incident")


# --------------------------------------------------------------------------- storage


class BlobStore(Protocol):
    """Where attachments' bytes are kept, by content id; writes are idempotent."""

    def put(self, content_id: str, data: bytes) -> None:
        """Keep `data` under `content_id` (already its SHA-256); a second put is a no-op."""
        ...

    def get(self, content_id: str) -> bytes:
        """The bytes kept under `content_id`; AttachmentNotFound when there are none."""
        ...


class LocalBlobStore:
    """A directory of files named by content id, fanned out by its first two digits."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_of(self, content_id: str) -> Path:
        """Where the bytes of `content_id` are (or would be)."""
        check_content_id(content_id)
        return self.directory / content_id[:2] / content_id

    def put(self, content_id: str, data: bytes) -> None:
        """Write atomically (a temporary file renamed over), so a reader never sees half."""
        target = self.path_of(content_id)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, content_id: str) -> bytes:
        """The stored bytes, or AttachmentNotFound."""
        try:
            return self.path_of(content_id).read_bytes()
        except FileNotFoundError:
            raise AttachmentNotFound(f"no stored bytes for {content_id}") from None


def open_blob_store(config: AttachmentConfig) -> BlobStore:
    """The store the config names: its S3 bucket if it has one, else its directory."""
    if config.s3 is not None:
        # Imported here: a deployment without S3 never loads the client.
        from geodata.s3_store import S3BlobStore

        return S3BlobStore(config.s3)
    return LocalBlobStore(config.directory)
