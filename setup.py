"""The wheel's one build step beyond pyproject.toml: the browser libraries the API serves.

Before the package data is collected, `build_assets.ensure_vendored` makes
`grid_service/static/vendor` from the npm lockfile when it is missing or stale (see
build_assets.py), so the wheel carries MapLibre GL JS and Swagger UI and a fresh
`pip install` serves /map and /docs. Everything else is declared in pyproject.toml.
"""

import importlib.util
import logging
from pathlib import Path
from types import ModuleType

from setuptools import setup  # type: ignore[import-untyped]
from setuptools.command.build_py import build_py  # type: ignore[import-untyped]

SOURCE_DIR = Path(__file__).resolve().parent


def _build_assets() -> ModuleType:
    # Loaded by path: the build backend does not put the source folder on sys.path.
    spec = importlib.util.spec_from_file_location("build_assets", SOURCE_DIR / "build_assets.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithAssets(build_py):  # type: ignore[misc]
    """build_py that first makes the vendored browser libraries, then globs package data."""

    def run(self) -> None:
        # An editable install serves the checkout's own folder, which bootstrap makes.
        if not self.editable_mode:
            _build_assets().ensure_vendored(SOURCE_DIR, log=self.announce_assets)
            # build_py globs package data once and keeps the list: glob again now.
            self.data_files = self._get_data_files()
        super().run()

    def announce_assets(self, message: str) -> None:
        """Log a line of the asset step as setuptools logs its own."""
        self.announce(message, level=logging.INFO)


setup(cmdclass={"build_py": BuildPyWithAssets})
