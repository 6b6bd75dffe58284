"""The wheel serves everything: built from the sources alone, installed in a fresh virtual
environment, run from outside the checkout.

The sources are copied without `grid_service/static/vendor` (git ignores it), so the
build step itself must make MapLibre GL JS and Swagger UI from the npm lockfile
(build_assets.py). The fresh environment finds the wheel's dependencies in this one's
site-packages through a path file, without this environment's editable install of wangge,
so every wangge module it imports is the installed wheel's.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from geodata.contract import Topics
from tests.integration.pipeline_support import free_port, wait_until

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("wangge", "geodata", "kafka_clients", "event_consumers", "grid_service")
MAPLIBRE = "grid_service/static/vendor/maplibre-gl/maplibre-gl.mjs"
SWAGGER_JS = "grid_service/static/vendor/swagger-ui/swagger-ui-bundle.js"


def _copy_sources(destination: Path) -> None:
    # What a clean checkout holds (tracked, plus new files not ignored): no vendored files.
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPOSITORY / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _run(
    args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> "subprocess.CompletedProcess[str]":
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args[:4]}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources without their vendored files."""
    setuptools = tuple(int(part) for part in version("setuptools").split(".")[:2])
    if setuptools < (70, 1):
        pytest.fail(f"setuptools {version('setuptools')} < 70.1: pip install -e '.[dev]'")
    sources = tmp_path_factory.mktemp("sources")
    _copy_sources(sources)
    assert not (sources / "grid_service/static/vendor").exists()
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: this environment's setuptools, nothing downloaded from PyPI.
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    _run([*pip_wheel, "-w", str(out), str(sources)])
    (built,) = out.glob("wangge-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; its python's folder."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    # A plain path line: this environment's .pth files (its editable wangge) are not run.
    Path(purelib, "dependencies-of-the-test-environment.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    pip_install = [sys.executable, "-m", "pip", "--python", str(python), "install"]
    _run([*pip_install, "--no-deps", "--no-index", "--quiet", str(wheel)])
    return venv


def _environment(database_url: str, bootstrap: str, topics: Topics, state: Path) -> dict[str, str]:
    # Nothing of this checkout: no PYTHONPATH, no WANGGE_* of the test run.
    inherited = {
        key: value for key, value in os.environ.items() if not key.startswith(("WANGGE_", "PYTHON"))
    }
    return {
        **inherited,
        "WANGGE_DATABASE_URL": database_url,
        "WANGGE_KAFKA_BOOTSTRAP": bootstrap,
        "WANGGE_TOPIC_NAMESPACE": topics.checkins.removesuffix(Topics().checkins),
        "WANGGE_STATE_DIR": str(state),
    }


@pytest.fixture
def served(
    installed: Path,
    database_factory: Callable[..., str],
    kafka_bootstrap: str,
    topic_factory: Callable[..., Topics],
    tmp_path: Path,
) -> Iterator[str]:
    """`wangge serve` of the installed wheel, from a folder outside the checkout; its URL."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = _environment(
        database_factory(migrated=False), kafka_bootstrap, topic_factory(), tmp_path / "state"
    )
    wangge = str(installed / "bin" / "wangge")
    # The schema from the migrations the wheel carries.
    _run([wangge, "db", "upgrade"], cwd=outside, env=env)
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [wangge, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        cwd=outside,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            return httpx.get(f"{base}/livez", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, 60, "the installed wangge serve answers /livez", every=0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        log.close()


def test_the_wheel_carries_the_pages_the_vendored_libraries_and_the_migrations(
    wheel: Path,
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for page in (
        "grid_service/static/map.html",
        "grid_service/static/map.js",
        "grid_service/static/app/index.html",
        "grid_service/static/app/sw.js",
        MAPLIBRE,
        "grid_service/static/vendor/maplibre-gl/maplibre-gl-worker.mjs",
        "grid_service/static/vendor/maplibre-gl/maplibre-gl.css",
        SWAGGER_JS,
        "grid_service/static/vendor/swagger-ui/swagger-ui.css",
        "geodata/migrations/env.py",
        "geodata/migrations/script.py.mako",
    ):
        assert page in names, page
    # Build inputs and development tools stay out.
    assert not [n for n in names if n.startswith(("grid_service/map_assets", "wangge/benchmarks"))]
    assert "grid_service/static/vendor/.installed" not in names
    # One lockfile, one copy step: the same bytes as the checkout's (made by bootstrap).
    checkout = REPOSITORY / MAPLIBRE
    if checkout.is_file():
        assert zipfile.ZipFile(wheel).read(MAPLIBRE) == checkout.read_bytes()


def test_the_installed_wheel_serves_the_map_the_app_and_the_docs_from_its_own_files(
    installed: Path, served: str, tmp_path: Path
) -> None:
    files = ", ".join(f"{package}.__file__" for package in PACKAGES)
    where = _run(
        [str(installed / "bin" / "python"), "-c", f"import {', '.join(PACKAGES)}; print({files})"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    ).stdout.split()
    for module_file in where:
        assert Path(module_file).is_relative_to(installed), where
    site = Path(where[PACKAGES.index("grid_service")]).parents[1]

    with httpx.Client(base_url=served, timeout=10, follow_redirects=True) as client:
        for page in ("/map", "/app", "/docs"):
            answer = client.get(page)
            assert answer.status_code == 200, (page, answer.text[:300])
            assert answer.headers["content-type"].startswith("text/html"), page
        assert "maplibre" in client.get("/map").text.lower()
        assert "swagger-ui-bundle.js" in client.get("/docs").text
        for path, packaged in (
            ("/map/assets/vendor/maplibre-gl/maplibre-gl.mjs", MAPLIBRE),
            ("/docs/assets/swagger-ui-bundle.js", SWAGGER_JS),
            ("/map/assets/map.js", "grid_service/static/map.js"),
        ):
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert "javascript" in answer.headers["content-type"], path
            body = hashlib.sha256(answer.content).hexdigest()
            assert body == hashlib.sha256((site / packaged).read_bytes()).hexdigest(), path
