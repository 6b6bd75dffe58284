"""The browser libraries the API serves, copied out of their npm packages, in one place.

MapLibre GL JS (the map) and Swagger UI (/docs) come from the npm registry, pinned with
their integrity hashes in `grid_service/map_assets/package-lock.json`, and the API serves
them from `grid_service/static/vendor`: no CDN at run time. Two callers make that folder:
`scripts/bootstrap.sh` for a checkout (`python build_assets.py`), and the wheel's build
step (`setup.py`), so that an installed wheel serves /map and /docs by itself.

The folder is current when its stamp holds the lockfile's SHA-256 and every file is in
it. Otherwise it is made again, from a `node_modules` already installed from the same
lockfile (docker/Dockerfile's Node stage puts one in `map_assets`), else from `npm ci` of
the lockfile in a temporary folder; then it replaces the old one whole, so a server
reading the folder meanwhile never sees it half copied. Standard library only: the build
step runs it before anything is installed.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

REPOSITORY: Final = Path(__file__).resolve().parent
ASSETS_DIR: Final = Path("grid_service") / "map_assets"
VENDOR_DIR: Final = Path("grid_service") / "static" / "vendor"
STAMP_NAME: Final = ".installed"

#: What the API serves, by folder under static/vendor, as paths inside node_modules.
VENDORED: Final[dict[str, tuple[str, ...]]] = {
    "maplibre-gl": (
        "maplibre-gl/dist/maplibre-gl.mjs",
        "maplibre-gl/dist/maplibre-gl-worker.mjs",
        "maplibre-gl/dist/maplibre-gl-shared.mjs",
        "maplibre-gl/dist/maplibre-gl.css",
        "maplibre-gl/LICENSE.txt",
    ),
    "swagger-ui": (
        "swagger-ui-dist/swagger-ui-bundle.js",
        "swagger-ui-dist/swagger-ui.css",
        "swagger-ui-dist/favicon-32x32.png",
        "swagger-ui-dist/LICENSE",
        "swagger-ui-dist/NOTICE",
    ),
}

# --ignore-scripts: no package runs code here (swagger-ui-dist's analytics hook included).
# --prefer-offline: a package already in npm's cache is taken from it; the lockfile's
# integrity hashes are checked either way, so the bytes are the same.
NPM_CI: Final = (
    "npm",
    "ci",
    "--ignore-scripts",
    "--prefer-offline",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
)


class AssetsError(Exception):
    """The browser libraries could not be made; the message says what to do."""


def lockfile_digest(assets_dir: Path) -> str:
    """SHA-256 of the lockfile: what the vendored files were made from."""
    return hashlib.sha256((assets_dir / "package-lock.json").read_bytes()).hexdigest()


def is_current(vendor_dir: Path, digest: str) -> bool:
    """Whether `vendor_dir` holds every file, made from the lockfile with this digest."""
    stamp = vendor_dir / STAMP_NAME
    if not stamp.is_file() or stamp.read_text().strip() != digest:
        return False
    return all(
        (vendor_dir / folder / Path(source).name).is_file()
        for folder, sources in VENDORED.items()
        for source in sources
    )


def _locked_packages(lockfile: Path) -> dict[str, tuple[object, object]]:
    packages = json.loads(lockfile.read_text())["packages"]
    # The root entry ("") describes the project itself, not an installed package.
    return {
        path: (entry.get("version"), entry.get("integrity"))
        for path, entry in packages.items()
        if path
    }


def installed_from_lockfile(node_modules: Path, lockfile: Path) -> bool:
    """Whether `node_modules` holds exactly the lockfile's packages (npm's hidden lockfile)."""
    hidden = node_modules / ".package-lock.json"
    if not hidden.is_file():
        return False
    try:
        return _locked_packages(hidden) == _locked_packages(lockfile)
    except (ValueError, KeyError, AttributeError):
        return False


def _npm_ci(assets_dir: Path, workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsError(
            "npm is missing, and MapLibre GL JS and Swagger UI are installed with it (npm ci"
            f" from {assets_dir / 'package-lock.json'}): install Node.js and npm, or run"
            f" `npm ci --ignore-scripts` in {assets_dir} first, then build again"
        )
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(assets_dir / name, workdir / name)
    done = subprocess.run([npm, *NPM_CI[1:]], cwd=workdir, check=False)
    if done.returncode != 0:
        raise AssetsError(f"npm ci failed (exit {done.returncode}) for {assets_dir}")
    return workdir / "node_modules"


def _copy(node_modules: Path, vendor_dir: Path, digest: str) -> None:
    fresh = vendor_dir.with_name(f".{vendor_dir.name}-{os.getpid()}")
    old = vendor_dir.with_name(f".{vendor_dir.name}-old-{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    for folder, sources in VENDORED.items():
        (fresh / folder).mkdir(parents=True)
        for source in sources:
            path = node_modules / source
            if not path.is_file():
                raise AssetsError(f"{path} is missing: does the lockfile pin another version?")
            shutil.copyfile(path, fresh / folder / path.name)
    (fresh / STAMP_NAME).write_text(digest + "\n")
    if vendor_dir.exists():
        vendor_dir.rename(old)
    fresh.rename(vendor_dir)
    shutil.rmtree(old, ignore_errors=True)


def ensure_vendored(root: Path = REPOSITORY, log: Callable[[str], None] = print) -> bool:
    """Make `grid_service/static/vendor` under `root` unless current; True when it did."""
    assets_dir, vendor_dir = root / ASSETS_DIR, root / VENDOR_DIR
    digest = lockfile_digest(assets_dir)
    if is_current(vendor_dir, digest):
        return False
    installed = assets_dir / "node_modules"
    if installed_from_lockfile(installed, assets_dir / "package-lock.json"):
        log(f"build_assets: copying MapLibre GL JS and Swagger UI from {installed}")
        _copy(installed, vendor_dir, digest)
        return True
    log("build_assets: fetching MapLibre GL JS and Swagger UI (npm ci from the lockfile)")
    with tempfile.TemporaryDirectory(prefix="wangge-npm-") as workdir:
        _copy(_npm_ci(assets_dir, Path(workdir)), vendor_dir, digest)
    return True


def main() -> int:
    """`python build_assets.py`: make the vendored files of this checkout if not current."""
    try:
        ensure_vendored()
    except AssetsError as exc:
        print(f"build_assets: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
