"""Attachments in an S3-compatible store, against a real S3 server over HTTP.

The server is moto's standalone S3 emulator (`moto_server`, from PyPI), started as its
own process: the only S3-compatible server installable here without the internet at run
time. It is a real HTTP server speaking the S3 REST API, not an object in this process.
"""

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from geodata.attachments import (
    AttachmentConfig,
    AttachmentNotFound,
    InvalidContentId,
    LocalBlobStore,
    content_id_of,
    open_blob_store,
)
from geodata.s3_store import S3BlobStore, S3Location

pytestmark = pytest.mark.integration

BUCKET = "wangge-photos"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free port with an empty bucket, stopped after the module."""
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = Minio(f"127.0.0.1:{port}", access_key="test", secret_key="test", secure=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.make_bucket(BUCKET)
            break
        except Exception:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_the_setting_chooses_the_store_and_bytes_round_trip(
    s3_endpoint: str, tmp_path: Path
) -> None:
    location = S3Location(s3_endpoint, BUCKET, access_key="test", secret_key="test")
    store = open_blob_store(AttachmentConfig(tmp_path, s3=location))
    assert isinstance(store, S3BlobStore)
    assert isinstance(open_blob_store(AttachmentConfig(tmp_path)), LocalBlobStore)

    data = b"\xff\xd8 a cleaned photo \xff\xd9"
    content_id = content_id_of(data)
    store.put(content_id, data)
    store.put(content_id, b"never written: the id is taken")  # idempotent by content
    assert store.get(content_id) == data
    assert list(tmp_path.iterdir()) == []  # nothing went to the directory

    # Under the prefix, in the bucket, as any other S3 client sees it.
    reader = Minio(s3_endpoint.removeprefix("http://"), "test", "test", secure=False)
    assert reader.get_object(BUCKET, f"attachments/{content_id}").read() == data


def test_a_missing_object_is_not_found_and_a_bad_id_is_refused(s3_endpoint: str) -> None:
    store = S3BlobStore(S3Location(s3_endpoint, BUCKET, access_key="test", secret_key="test"))
    with pytest.raises(AttachmentNotFound):
        store.get("0" * 64)
    with pytest.raises(InvalidContentId):
        store.get("../etc/passwd")
    secret = S3Location(s3_endpoint, BUCKET, access_key="k", secret_key="s3cr3t")
    assert "s3cr3t" not in repr(secret)


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        S3Location("s3.example.com", BUCKET, access_key="k")


def test_the_endpoint_setting_selects_s3(monkeypatch: pytest.MonkeyPatch) -> None:
    from wangge.settings import AttachmentSettings

    monkeypatch.setenv("WANGGE_ATTACHMENTS_S3_ENDPOINT", "https://oss.example.com")
    monkeypatch.setenv("WANGGE_ATTACHMENTS_S3_BUCKET", BUCKET)
    monkeypatch.setenv("WANGGE_ATTACHMENTS_S3_SECRET_KEY", "s3cr3t")
    s3 = AttachmentSettings().config().s3
    assert s3 is not None
    assert (s3.endpoint, s3.bucket, s3.secret_key) == ("https://oss.example.com", BUCKET, "s3cr3t")
    monkeypatch.delenv("WANGGE_ATTACHMENTS_S3_ENDPOINT")
    assert AttachmentSettings().config().s3 is None
