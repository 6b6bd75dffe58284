"""The peer benchmark's own environment: tipg installed apart from wangge, made once.

tipg pins its own FastAPI, Starlette and pydantic; installed into wangge's environment it
could move wangge's, and the figures of both. So it lives in a virtual environment of its
own under the checkout (`.bench/peers-venv`, ignored by git), made on first use with
`python -m venv` and pip from the package index, and reused while its requirements are
unchanged. uvicorn is pinned to the version wangge's environment runs, so that both
servers differ only in their app.
"""

import contextlib
import fcntl
import importlib.metadata
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TIPG_VERSION = "1.6.1"
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / ".bench" / "peers-venv"
_STAMP = ".wangge-peers"
_PIP_TIMEOUT_S = 600.0
_PROBE = (
    "import importlib.metadata as m, importlib.util as u, sys;"
    "print(m.version('tipg'), m.version('uvicorn'),"
    " 'uvloop' if u.find_spec('uvloop') else 'asyncio',"
    " 'httptools' if u.find_spec('httptools') else 'h11',"
    " '%d.%d.%d' % sys.version_info[:3])"
)


class PeerInstallError(RuntimeError):
    """The peer environment could not be made (most often: no route to the index)."""


@dataclass(frozen=True)
class PeerEnvironment:
    """An environment with tipg and uvicorn, and what it runs them with."""

    folder: Path
    python: str
    tipg: str
    uvicorn: str
    loop: str
    http: str
    python_version: str

    def describe(self) -> str:
        """One line for the machine description."""
        return (
            f"tipg {self.tipg} in {self.folder} (Python {self.python_version}), uvicorn "
            f"{self.uvicorn}, one worker, {self.loop} loop, {self.http} parser"
        )


def requirements() -> list[str]:
    """What the environment holds: tipg, and the uvicorn wangge's environment runs."""
    return [f"tipg=={TIPG_VERSION}", f"uvicorn=={importlib.metadata.version('uvicorn')}"]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    # Two runs at once (tests in parallel) must not both build the same environment.
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], what: str) -> str:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerInstallError(f"{what}: no answer in {_PIP_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        # pip prints one "Location ... is ignored" warning per configured local index it
        # lacks; the reason it failed is in the last lines.
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise PeerInstallError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def ensure_peer_environment(folder: Path = DEFAULT_FOLDER) -> PeerEnvironment:
    """The peer environment in `folder`, made or brought up to date first if needed.

    Raises PeerInstallError, with pip's own words, when pip cannot install tipg: the
    benchmark needs the package index the first time (or after a pin changes).
    """
    wanted = "\n".join(requirements())
    python = folder / "bin" / "python"
    stamp = folder / _STAMP
    with _locked(folder):
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(folder)], f"python -m venv {folder}")
        if not stamp.exists() or stamp.read_text() != wanted:
            stamp.unlink(missing_ok=True)
            _run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--retries", "2", "--timeout", "20", *requirements()],
                f"pip install {' '.join(requirements())} into {folder} (from the package "
                "index: is it reachable from here?)",
            )  # fmt: skip
            stamp.write_text(wanted)
    tipg, uvicorn, loop, http, version = _run([str(python), "-c", _PROBE], "probe").split()
    return PeerEnvironment(folder, str(python), tipg, uvicorn, loop, http, version)
