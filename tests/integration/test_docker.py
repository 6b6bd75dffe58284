"""The production compose file, validated by Debian's docker-compose (no engine needed)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"


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
    # Every package the image copies exists, so `docker build` would find it.
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (COMPOSE.parents[1] / source).exists(), source
