"""People's passwords and sign-in sessions, as pure rules: hashing, policy, lock-out.

Passwords are hashed with argon2id by argon2-cffi, at OWASP's recommended minimum
(19 MiB, 2 passes, 1 lane: ~40 ms here). A one-time password handed out by
`wangge users import` is 16 characters drawn by the CSPRNG from 32 (80 bits) and must be
changed at its first use: no guessing reaches 2^80, so it is hashed at a much lower cost
(1 MiB, 1 pass), which keeps importing a city of 2,500 accounts to seconds. So that a
failed sign-in takes the same time whatever the account (unknown, one-time or chosen
password), a failure against a cheap hash also runs one full-cost verification.

A session id, like a bearer token, is 256 bits from the CSPRNG and is stored only as its
SHA-256 (see geodata.accounts for why no slow hash is needed there).

Lock-out counts failures per username, whether or not an account has the name, so that
"locked" tells a stranger nothing about which names exist.
"""

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from geodata.accounts import InvalidAccount, NotAuthenticated, PermissionDenied

SESSION_PREFIX: Final = "ws_"
"""Marks a wangge session id, as `wg_` marks a token."""
_SESSION = re.compile(r"ws_[A-Za-z0-9_-]{43}")  # 32 bytes are 43 URL-safe base64 characters

MAX_PASSWORD_LENGTH: Final = 128
"""Longer input is refused before hashing: argon2's cost should not depend on the caller."""

ONE_TIME_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"
"""Lower case letters and digits without the look-alikes (i l o 0 1), read aloud easily."""
ONE_TIME_GROUPS: Final = 4
ONE_TIME_GROUP_LENGTH: Final = 4

# A few passwords every guessing list starts with; the length rule removes most others.
_COMMON: Final = frozenset(
    {
        "1234567890",
        "12345678910",
        "123456789a",
        "0123456789",
        "1qaz2wsx3edc",
        "a123456789",
        "abc1234567",
        "abcdefghij",
        "iloveyou12",
        "password12",
        "password123",
        "password1234",
        "qwertyuiop",
        "qwerty1234",
        "woaini1314",
        "zxcvbnm123",
        "1111111111",
        "0000000000",
        "8888888888",
        "wangge12345",
        "admin12345",
        "administrator",
    }
)

# Parameters of the two kinds of hash (see the module docstring). The hashers encode them
# in every hash, so verification needs no knowledge of which one made it.
_PEOPLE: Final = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1, type=Type.ID)
_ONE_TIME: Final = PasswordHasher(time_cost=1, memory_cost=1_024, parallelism=1, type=Type.ID)
# Verified against when no account has the name, so an unknown name costs what a known one does.
_UNKNOWN_ACCOUNT_HASH: Final = _PEOPLE.hash(secrets.token_urlsafe(16))


class WeakPassword(InvalidAccount):
    """A new password the policy refuses (too short, too common, the name, the old one)."""

    code = "weak_password"


class InvalidCredentials(NotAuthenticated):
    """No account has the name, or the password is not its password: never said which."""

    code = "invalid_credentials"


class SessionExpired(NotAuthenticated):
    """A session cookie that is unknown, signed out or past its expiry."""

    code = "session_expired"


class PasswordChangeRequired(PermissionDenied):
    """The right one-time password: it must be replaced before a session starts."""

    code = "password_change_required"


@dataclass(frozen=True, slots=True)
class SignInPolicy:
    """How sign-in is guarded: the lock-out, a session's lifetime, the password rule."""

    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)
    session_lifetime: timedelta = timedelta(hours=12)
    min_password_length: int = 10

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.lockout <= timedelta(0):
            raise ValueError("need max_failures >= 1 and a positive lockout")
        if self.session_lifetime <= timedelta(0):
            raise ValueError("a session lives a positive time")
        if not 8 <= self.min_password_length <= MAX_PASSWORD_LENGTH:
            raise ValueError(f"a password minimum is 8 to {MAX_PASSWORD_LENGTH} characters")


# --------------------------------------------------------------------------- hashing


def _normalized(password: str) -> str:
    # NFKC: the same password typed with full-width digits (a Chinese IME) or composed
    # accents is the same password.
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """The argon2id hash of a password a person chose."""
    return _PEOPLE.hash(_normalized(password))


def hash_one_time_password(password: str) -> str:
    """The cheaper argon2id hash of a generated one-time password (80 random bits)."""
    return _ONE_TIME.hash(_normalized(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches the hash; None (no account, no password) costs the same."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    candidate = _normalized(password)
    if password_hash is None:
        _verify(_UNKNOWN_ACCOUNT_HASH, candidate)
        return False
    if _verify(password_hash, candidate):
        return True
    if not _is_full_cost(password_hash):
        _verify(_UNKNOWN_ACCOUNT_HASH, candidate)  # a failure takes the usual time
    return False


def _verify(password_hash: str, candidate: str) -> bool:
    try:
        return _PEOPLE.verify(password_hash, candidate)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _is_full_cost(password_hash: str) -> bool:
    try:
        return not _PEOPLE.check_needs_rehash(password_hash)
    except InvalidHashError:
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a person's hash was made with other parameters than today's (rehash it)."""
    return not _is_full_cost(password_hash)


def new_one_time_password() -> str:
    """A fresh one-time password such as `k7mq-3xhp-9tcw-2bfr`: 80 bits from the CSPRNG."""
    groups = (
        "".join(secrets.choice(ONE_TIME_ALPHABET) for _ in range(ONE_TIME_GROUP_LENGTH))
        for _ in range(ONE_TIME_GROUPS)
    )
    return "-".join(groups)


def check_new_password(
    password: str, *, name: str, old_password: str | None, policy: SignInPolicy
) -> None:
    """Raise WeakPassword unless `password` may replace `old_password` for account `name`.

    The rule (NIST SP 800-63B's, without composition rules): long enough, not too long,
    not a well-known password, not the account's name, not the password it replaces.
    """
    candidate = _normalized(password)
    if len(candidate) < policy.min_password_length:
        raise WeakPassword(f"a password has at least {policy.min_password_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if not candidate.isprintable():
        raise WeakPassword("a password holds printable characters only")
    folded = candidate.casefold()
    if folded in _COMMON or len(set(folded)) < 3:
        raise WeakPassword("this password is among the first any guesser tries")
    if name.casefold() in folded:
        raise WeakPassword("a password does not contain the account's name")
    if old_password is not None and candidate == _normalized(old_password):
        raise WeakPassword("the new password is the one it replaces")


# --------------------------------------------------------------------------- sessions


def new_session_id() -> str:
    """A fresh session id: the prefix and 256 bits from the CSPRNG, URL-safe."""
    return SESSION_PREFIX + secrets.token_urlsafe(32)


def hash_session_id(session_id: str) -> str:
    """The stored form of a session id: its SHA-256, hex."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def is_well_formed_session_id(session_id: str) -> bool:
    """Whether `session_id` could be one of ours; anything else is refused without a lookup."""
    return _SESSION.fullmatch(session_id) is not None


# --------------------------------------------------------------------------- lock-out


@dataclass(frozen=True, slots=True)
class FailureState:
    """A username's run of failed sign-ins: how many, the last one, and any lock."""

    failures: int
    last_failed_at: datetime
    locked_until: datetime | None = None


def locked_until(state: FailureState | None, now: datetime) -> datetime | None:
    """When the lock on a username ends, or None when it may sign in now."""
    if state is None or state.locked_until is None or state.locked_until <= now:
        return None
    return state.locked_until


def after_failure(state: FailureState | None, now: datetime, policy: SignInPolicy) -> FailureState:
    """The state after one more failure: the `max_failures`-th in a row locks the name.

    A run ends when a lock has run out, or after a quiet spell as long as the lock-out,
    so that a few typos a month never add up to a lock. While locked, nothing is counted
    (a locked name is refused before its password is checked).
    """
    if state is not None and locked_until(state, now) is not None:
        return state
    fresh = (
        state is None
        or state.locked_until is not None
        or now - state.last_failed_at >= policy.lockout
    )
    failures = 1 if fresh or state is None else state.failures + 1
    lock = now + policy.lockout if failures >= policy.max_failures else None
    return FailureState(failures, now, lock)
