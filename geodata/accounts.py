"""Accounts, roles and bearer tokens: who may do what, as pure rules over plain data.

A token is 32 bytes from the operating system's CSPRNG, shown once and stored only as its
SHA-256. A slow, salted password hash (bcrypt, argon2) is there to make guessing a
low-entropy human password expensive; a 256-bit random token cannot be guessed or
brute-forced from its hash at any speed, so that cost would buy nothing. What a plain,
unsalted SHA-256 buys instead: the hash is deterministic, so it is the lookup key itself
(one indexed query per request, no scan comparing salts), and it costs microseconds on
an endpoint every phone hits every few seconds.
"""

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from geodata.errors import WanggeError

TOKEN_PREFIX: Final = "wg_"
"""Marks a wangge token, so that secret scanners and people recognise a leaked one."""

TOKEN_BYTES: Final = 32
_TOKEN = re.compile(r"wg_[A-Za-z0-9_-]{43}")  # 32 bytes are 43 URL-safe base64 characters
_AREA = re.compile(r"[0-9]{6}(?:[0-9]{3}){0,2}")  # a district, street or community code
_WORKER_ID = re.compile(r"W[0-9]{5}")
MAX_NAME_LENGTH: Final = 64


class Role(StrEnum):
    """What an account is for; each role's rights are the Principal's methods."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


# --------------------------------------------------------------------------- errors


class InvalidAccount(WanggeError):
    """An account that breaks the role's rules (a supervisor without an area, ...)."""

    code = "invalid_account"


class AccountExists(WanggeError):
    """Another account already has the name."""

    code = "account_exists"


class AccountNotFound(WanggeError):
    """No account has the name."""

    code = "account_not_found"


class NotAuthenticated(WanggeError):
    """The request did not prove who sends it."""

    code = "missing_token"


class MissingToken(NotAuthenticated):
    """No bearer token where one is required."""

    code = "missing_token"


class InvalidToken(NotAuthenticated):
    """A bearer token that is malformed, unknown or revoked."""

    code = "invalid_token"


class PermissionDenied(WanggeError):
    """The caller is known but may not do this (the role does not allow it)."""

    code = "forbidden"


class OutsideArea(PermissionDenied):
    """A supervisor asked about an area or a worker outside its area code prefix."""

    code = "outside_area"


class WorkerMismatch(PermissionDenied):
    """A worker's token was used to act as, or read, another worker."""

    code = "worker_mismatch"


class SourceNotAllowed(PermissionDenied):
    """An incident source the caller's role may not report as."""

    code = "source_not_allowed"


# --------------------------------------------------------------------------- tokens


def new_token() -> str:
    """A fresh bearer token: the prefix and 256 bits from the CSPRNG, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The stored form of a token: its SHA-256, hex (see the module docstring for why)."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_well_formed(token: str) -> bool:
    """Whether `token` could be one of ours; anything else is refused without a lookup."""
    return _TOKEN.fullmatch(token) is not None


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A validated account to create: a worker has a worker id, a supervisor an area."""

    name: str
    role: Role
    area_prefix: str | None = None
    worker_id: str | None = None


def account_spec(
    name: str, role: str, area: str | None = None, worker: str | None = None
) -> AccountSpec:
    """Check an account's fields against its role's rules; raise InvalidAccount if broken."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidAccount(f"a name is 1 to {MAX_NAME_LENGTH} printable characters")
    try:
        kind = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidAccount(f"role {role!r} is not one of {roles}") from None
    if kind is Role.SUPERVISOR:
        if area is None or _AREA.fullmatch(area) is None:
            raise InvalidAccount(
                "a supervisor needs --area: a district (6 digits), street (9) or community (12)"
            )
    elif area is not None:
        raise InvalidAccount(f"only a supervisor has an area, not a {kind}")
    if kind is Role.WORKER:
        if worker is None or _WORKER_ID.fullmatch(worker) is None:
            raise InvalidAccount("a worker account needs --worker, a worker id such as W00042")
    elif worker is not None:
        raise InvalidAccount(f"only a worker account has a worker id, not a {kind}")
    return AccountSpec(name, kind, area, worker)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token or session speaks for, and the scope rules of its role."""

    account_id: int
    #: The id of the bearer token, or of the session when `via_session`.
    token_id: int
    name: str
    role: Role
    area_prefix: str | None = None
    worker_id: str | None = None
    #: Signed in with a password (a browser's session cookie), not a bearer token.
    via_session: bool = False

    @property
    def credential(self) -> tuple[str, int]:
        """What the caller presented, as a key: its own allowance of requests is kept under it."""
        return ("session" if self.via_session else "token", self.token_id)

    def __post_init__(self) -> None:
        # An empty prefix would read the whole city: never build such a supervisor.
        if self.role is Role.SUPERVISOR and not self.area_prefix:
            raise ValueError("a supervisor principal needs a non-empty area prefix")
        if self.role is Role.WORKER and not self.worker_id:
            raise ValueError("a worker principal needs a worker id")

    def can_read_area(self, code: str) -> bool:
        """Whether the caller may read what lies under `code`: admin all, supervisor its own."""
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.SUPERVISOR:
            assert self.area_prefix  # __post_init__
            return code.startswith(self.area_prefix)
        return False

    def can_act_as_worker(self, worker_id: str) -> bool:
        """Whether the caller may post events as `worker_id`: that worker's own token only."""
        return self.role is Role.WORKER and self.worker_id == worker_id

    def can_read_worker(self, worker_id: str, grid_codes: Iterable[str]) -> bool:
        """Whether the caller may read a worker assigned to `grid_codes`: self, area, admin."""
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.WORKER:
            return self.worker_id == worker_id
        return any(self.can_read_area(code) for code in grid_codes)

    def may_report_as(self, source: str, reporter_id: str | None) -> bool:
        """Whether the caller may post an incident with this source and reporter.

        A worker reports as itself only; residents, the hotline, lockers and sensors come
        in through a supervisor's or an admin's token (a desk or an integration).
        """
        if source == "worker":
            return reporter_id is not None and self.can_act_as_worker(reporter_id)
        return self.role is not Role.WORKER
