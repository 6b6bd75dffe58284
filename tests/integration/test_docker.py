"""The production compose file, validated by Debian's docker-compose (no engine needed)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import build_assets

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[2]
COMPOSE = REPOSITORY / "docker" / "compose.yaml"
DOCKERFILE = REPOSITORY / "docker" / "Dockerfile"


@pytest.fixture(scope="module")
def resolved_compose() -> dict[str, object]:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is missing: `make test` installs it (scripts/test-tools.sh)")
    done = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded = yaml.safe_load(done.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_postgis_kafka_in_kraft_mode_the_api_and_the_consumers(
    resolved_compose: dict[str, object],
) -> None:
    services = resolved_compose["services"]
    assert isinstance(services, dict)
    assert services["postgis"]["image"].startswith("postgis/postgis:")
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in services
    assert services["api"]["environment"]["WANGGE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert services["consumers"]["command"] == ["consume"]
    assert services["consumers"]["environment"] == services["api"]["environment"]


def test_compose_builds_the_image_from_the_dockerfile(resolved_compose: dict[str, object]) -> None:
    services = resolved_compose["services"]
    assert isinstance(services, dict)
    build = services["setup"]["build"]
    dockerfile = Path(build["context"]) / build["dockerfile"]
    assert dockerfile.resolve() == (COMPOSE.parent / "Dockerfile").resolve()
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["wangge"]' in text
    # Every file the image copies from the context exists, so `docker build` would find it.
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (COMPOSE.parents[1] / source).exists(), source


def _stages(dockerfile: str) -> list[tuple[str, str, list[str]]]:
    """(image, stage name, instructions) of each `FROM` of a Dockerfile, in order."""
    stages: list[tuple[str, str, list[str]]] = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words and words[0] == "FROM":
            name = words[3] if len(words) > 3 and words[2].upper() == "AS" else ""
            stages.append((words[1], name, []))
        elif words and stages and not line.startswith("#"):
            stages[-1][2].append(line.strip())
    return stages


def test_the_image_gets_its_browser_libraries_from_a_node_stage_and_the_lockfile() -> None:
    stages = _stages(DOCKERFILE.read_text())
    (node_image, node_stage, node_lines), (_, wheel_stage, wheel_lines) = stages[:2]
    assert node_image.startswith("node:")
    assert any("package-lock.json" in line and line.startswith("COPY") for line in node_lines)
    (npm,) = (line for line in node_lines if line.startswith("RUN") and "npm" in line)
    assert "npm ci" in npm
    assert "--ignore-scripts" in npm  # no package runs code in the build
    # The wheel's build step finds them where build_assets looks for an installed lockfile.
    installed = (build_assets.ASSETS_DIR / "node_modules").as_posix()
    assert any(
        line.startswith(f"COPY --from={node_stage} ") and line.endswith(f"./{installed}")
        for line in wheel_lines
    ), wheel_lines
    assert any(line.startswith("RUN pip wheel") for line in wheel_lines)
    # The image itself installs that wheel; it has no Node and no sources.
    image, name, image_lines = stages[-1]
    assert image.startswith("python:")
    assert not name
    assert f"COPY --from={wheel_stage} /wheels /wheels" in image_lines
    assert not [line for line in image_lines if line.startswith("COPY") and "--from" not in line]


def test_the_build_context_leaves_out_the_checkouts_own_copies() -> None:
    ignored = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert build_assets.VENDOR_DIR.as_posix() in ignored
    assert (build_assets.ASSETS_DIR / "node_modules").as_posix() in ignored
    # Every top-level path the Dockerfile copies from the context is let in.
    allowed = {line[1:] for line in ignored if line.startswith("!")}
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert source.split("/")[0] in allowed, source


def test_the_api_keeps_incident_photos_on_a_volume(resolved_compose: dict[str, object]) -> None:
    services = resolved_compose["services"]
    assert isinstance(services, dict)
    assert "WANGGE_STATE_DIR=/var/lib/wangge" in DOCKERFILE.read_text()
    mounts = [str(volume) for volume in services["api"]["volumes"]]
    assert any(mount.startswith("attachments:/var/lib/wangge/attachments") for mount in mounts), (
        mounts
    )


def _fake_node_modules(root: Path, lockfile: Path, hidden_lockfile: Path) -> None:
    """A node_modules as `npm ci` leaves it: its hidden lockfile, and each vendored file."""
    node_modules = root / build_assets.ASSETS_DIR / "node_modules"
    node_modules.mkdir(parents=True)
    shutil.copyfile(hidden_lockfile, node_modules / ".package-lock.json")
    for sources in build_assets.VENDORED.values():
        for source in sources:
            (node_modules / source).parent.mkdir(parents=True, exist_ok=True)
            (node_modules / source).write_text(f"bytes of {source}")
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(lockfile.parent / name, root / build_assets.ASSETS_DIR / name)


def test_the_wheel_stage_copies_from_the_node_stage_without_npm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lockfile = REPOSITORY / build_assets.ASSETS_DIR / "package-lock.json"
    locked = json.loads(lockfile.read_text())
    hidden = tmp_path / "hidden.json"
    # npm's hidden lockfile lists the same packages, without the project's own root entry.
    hidden.write_text(
        json.dumps(
            {
                **locked,
                "packages": {path: entry for path, entry in locked["packages"].items() if path},
            }
        )
    )
    _fake_node_modules(tmp_path / "src", lockfile, hidden)
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))

    assert build_assets.ensure_vendored(tmp_path / "src", log=lambda _line: None)

    vendor = tmp_path / "src" / build_assets.VENDOR_DIR
    assert (vendor / "maplibre-gl" / "maplibre-gl.mjs").read_text() == (
        "bytes of maplibre-gl/dist/maplibre-gl.mjs"
    )
    assert build_assets.is_current(vendor, build_assets.lockfile_digest(lockfile.parent))
    # Current: a second build copies nothing.
    assert not build_assets.ensure_vendored(tmp_path / "src", log=lambda _line: None)


def test_node_modules_of_another_lockfile_are_not_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lockfile = REPOSITORY / build_assets.ASSETS_DIR / "package-lock.json"
    locked = json.loads(lockfile.read_text())
    packages = {path: dict(entry) for path, entry in locked["packages"].items() if path}
    packages["node_modules/maplibre-gl"]["version"] = "0.0.1"
    hidden = tmp_path / "hidden.json"
    hidden.write_text(json.dumps({**locked, "packages": packages}))
    _fake_node_modules(tmp_path / "src", lockfile, hidden)
    monkeypatch.setenv("PATH", str(tmp_path / "no-npm-here"))

    with pytest.raises(build_assets.AssetsError, match="npm is missing"):
        build_assets.ensure_vendored(tmp_path / "src", log=lambda _line: None)
    assert not (tmp_path / "src" / build_assets.VENDOR_DIR).exists()
