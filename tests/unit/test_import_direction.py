"""Imports flow one way: `wangge` -> the two adapters -> the domain core `geodata`; the
Kafka client factory `kafka_clients` is below every package but `geodata`, which never needs it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("wangge", "geodata", "kafka_clients", "event_consumers", "grid_service")
#: What each package must never import (the simulator and the benchmarks live in `wangge`).
FORBIDDEN = {
    "geodata": {"wangge", "kafka_clients", "event_consumers", "grid_service"},
    "kafka_clients": {"wangge", "geodata", "event_consumers", "grid_service"},
    "event_consumers": {"wangge", "grid_service"},
    "grid_service": {"wangge", "event_consumers"},
}


def _imported_packages(source: str) -> set[str]:
    """The first-party top-level packages a module imports, lazily imported ones too."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_upstream_of_it(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules
    wrong = {
        str(path.relative_to(ROOT)): sorted(
            _imported_packages(path.read_text(encoding="utf-8")) & FORBIDDEN[package]
        )
        for path in modules
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_the_checker_sees_lazy_imports_inside_functions() -> None:
    source = "import numpy\ndef f():\n    from wangge.simulation import plan\n    import geodata"
    assert _imported_packages(source) == {"wangge", "geodata"}
