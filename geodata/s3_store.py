"""Attachments' bytes in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, OSS/COS
in S3 mode), behind the same `BlobStore` protocol as the local directory.

The client is MinIO's (`minio`): put, get and stat are all this store needs, and it
brings only urllib3 and a signer, where boto3 brings botocore's whole model of AWS. It
speaks path-style requests to any endpoint, which every S3-compatible server takes.
"""

from dataclasses import dataclass
from io import BytesIO
from typing import Final
from urllib.parse import urlsplit

from minio import Minio
from minio.error import S3Error

from geodata.attachments import AttachmentNotFound, check_content_id

_MISSING: Final = frozenset({"NoSuchKey", "NoSuchObject"})


@dataclass(frozen=True, slots=True)
class S3Location:
    """An S3-compatible bucket: its endpoint URL, bucket, key prefix and credentials."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str = ""
    prefix: str = "attachments/"
    region: str | None = None

    def __post_init__(self) -> None:
        url = urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/"):
            raise ValueError(
                f"the S3 endpoint must be http(s)://host[:port], got {self.endpoint!r}"
            )
        if not self.bucket:
            raise ValueError("the S3 bucket must be named")

    def __repr__(self) -> str:
        # The secret never reaches a log line through a repr.
        return f"S3Location({self.endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"


class S3BlobStore:
    """Objects named `prefix + content id` in one bucket; a second put of a present id
    is skipped, as the content id is the hash of the bytes."""

    def __init__(self, location: S3Location) -> None:
        url = urlsplit(location.endpoint)
        self.location = location
        self._client = Minio(
            url.netloc,
            access_key=location.access_key,
            secret_key=location.secret_key,
            secure=url.scheme == "https",
            region=location.region,
        )

    def key_of(self, content_id: str) -> str:
        """The object key of `content_id`."""
        return self.location.prefix + check_content_id(content_id)

    def put(self, content_id: str, data: bytes) -> None:
        """Upload the bytes unless an object of that id is there already."""
        key = self.key_of(content_id)
        try:
            self._client.stat_object(self.location.bucket, key)
            return
        except S3Error as error:
            if error.code not in _MISSING:
                raise
        self._client.put_object(
            self.location.bucket,
            key,
            BytesIO(data),
            len(data),
            content_type="application/octet-stream",
        )

    def get(self, content_id: str) -> bytes:
        """The stored bytes, or AttachmentNotFound."""
        try:
            response = self._client.get_object(self.location.bucket, self.key_of(content_id))
        except S3Error as error:
            if error.code in _MISSING:
                raise AttachmentNotFound(f"no stored bytes for {content_id}") from None
            raise
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()
