"""The session cookie a browser carries after a password sign-in, and its CSRF guard.

The cookie `wangge_session` holds the session id (`ws_...`, 256 random bits); the server
keeps only its SHA-256. It is:
- `HttpOnly`: no script reads it, so a script injected into a page cannot carry it off;
- `SameSite=Strict`: a browser sends it only with requests that another site did not
  start, so a link or form elsewhere cannot ride on it;
- `Secure` when the request came over https (as uvicorn sees it, a trusted proxy's
  X-Forwarded-Proto included), or always with WANGGE_SESSION_COOKIE_SECURE, for a
  deployment whose TLS ends at a proxy the API does not see. Not always: the local map
  on http://127.0.0.1 must work, and a browser drops a Secure cookie set over http;
- `Path=/` and `Max-Age` = the session's remaining lifetime, so it leaves the browser
  when the session ends on the server.

CSRF: besides SameSite=Strict, a request that changes something (any method but GET,
HEAD, OPTIONS) authenticated by the cookie must carry `X-Requested-With` (any value; the
pages send `wangge`), as must sign-in and a password change themselves. A form on another
site cannot set a header, and a script there can only with a CORS preflight, which this
API never grants for writes (grid_service/cors.py allows GET and HEAD only). So a write
can come only from a page of this origin. Bearer tokens are not cookies: nothing sends
them on its own, and they need no such header.

Sessions looked up are kept in memory for the token cache's TTL (unknown ids too, so a
stale cookie on every tile costs one lookup), never beyond their expiry; a sign-out
drops its entry at once in this process, and within the TTL in the others.
"""

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Final

from fastapi import Request, Response

from geodata.accounts import PermissionDenied
from geodata.db.sign_in import SessionLookup

COOKIE_NAME: Final = "wangge_session"
FETCH_HEADER: Final = "X-Requested-With"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_PRUNE_ABOVE: Final = 10_000


class FetchHeaderMissing(PermissionDenied):
    """A cookie-authenticated write (or a sign-in) without X-Requested-With: maybe forged."""

    code = "fetch_header_missing"


def require_fetch_header(request: Request) -> None:
    """Raise FetchHeaderMissing unless the request carries X-Requested-With."""
    if not request.headers.get(FETCH_HEADER, "").strip():
        raise FetchHeaderMissing(
            f"a request that signs in or changes something with the session cookie carries"
            f" the header {FETCH_HEADER} (a page of another site cannot set it)"
        )


def session_id_of(request: Request) -> str | None:
    """The session cookie's value, or None without one."""
    return request.cookies.get(COOKIE_NAME)


def _secure(request: Request, always: bool) -> bool:
    return always or request.url.scheme == "https"


def set_session_cookie(
    response: Response,
    request: Request,
    session_id: str,
    *,
    max_age_s: int,
    secure_always: bool,
) -> None:
    """Give the browser the session cookie (see the module docstring for its attributes)."""
    response.set_cookie(
        COOKIE_NAME,
        session_id,
        max_age=max(0, max_age_s),
        path="/",
        secure=_secure(request, secure_always),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request, *, secure_always: bool) -> None:
    """Tell the browser to forget the session cookie."""
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        secure=_secure(request, secure_always),
        httponly=True,
        samesite="strict",
    )


Clock = Callable[[], float]


class SessionCache:
    """Session lookups by id hash for `ttl_s` seconds, unknown ones too (as None)."""

    def __init__(self, ttl_s: float, clock: Clock = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[SessionLookup | None, float]] = {}

    def get(self, session_hash: str) -> tuple[SessionLookup | None] | None:
        """`(lookup,)` when a lookup less than `ttl_s` old is kept (None: unknown), else None."""
        with self._lock:
            entry = self._entries.get(session_hash)
            if entry is None:
                return None
            lookup, until = entry
            if self._clock() >= until:
                del self._entries[session_hash]
                return None
            return (lookup,)

    def put(self, session_hash: str, lookup: SessionLookup | None) -> None:
        """Remember what the database said about a session id hash."""
        if self.ttl_s <= 0:
            return
        with self._lock:
            now = self._clock()
            if len(self._entries) > _PRUNE_ABOVE:
                self._entries = {h: e for h, e in self._entries.items() if e[1] > now}
            self._entries[session_hash] = (lookup, now + self.ttl_s)

    def drop(self, session_hash: str) -> None:
        """Forget a session (signed out here): the next request asks the database."""
        with self._lock:
            self._entries.pop(session_hash, None)

    def drop_account(self, account_id: int) -> None:
        """Forget every session of an account (its password changed here)."""
        with self._lock:
            self._entries = {
                h: (lookup, until)
                for h, (lookup, until) in self._entries.items()
                if lookup is None or lookup.principal.account_id != account_id
            }


def remaining_s(expires_at: datetime, now: datetime) -> int:
    """Whole seconds from `now` until `expires_at`, at least 0."""
    return max(0, int((expires_at - now).total_seconds()))
