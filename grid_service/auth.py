"""Authentication (bearer tokens, and browser sessions after a password sign-in), role
checks and per-credential rate limits for the API's routes.

One rule on every route, public ones included: a request that presents a token must
present a valid one. A malformed, unknown or revoked token is 401 `invalid_token`, never
silently anonymous; `install_auth` adds the middleware that makes it so, even on routes
that take no principal (public grids, the OGC landing page, the map, the docs).

A request without a token may carry the session cookie (grid_service/session_cookie.py;
the routes that sign in and out are grid_service/session.py). A live session speaks for
its account as a token would. A stale cookie (signed out, expired, unknown) is no
identity: public routes answer as to anyone (the browser sends the cookie with every
tile), and routes that need a caller answer 401 `session_expired`. A cookie-authenticated
write without `X-Requested-With` is 403 `fetch_header_missing` (CSRF). With both, the
token is the caller and the cookie is ignored.

What routers use:
- `OptionalPrincipal`: public reads. No Authorization header gives None.
- `RequiredPrincipal`: any authenticated caller; no token is 401 `missing_token`.
- `Depends(require_roles(Role.ADMIN, ...))`: 403 `forbidden` for the other roles; with
  `limit_rate=True` (write routes) also 429 `rate_limited` with `Retry-After`.
- `ensure_area`, `ensure_worker`, `scoped_code`, `may_read_personal`: the scope checks of
  `geodata.accounts.Principal`, raising the errors grid_service.errors maps (403).

The token and session caches and the rate limiters live in this process's memory: with
N API processes a token may make up to N times the configured rate, and each process may
accept a revoked token or a session signed out elsewhere until its cache entry expires
(`token_cache_ttl_s`, 5 s by default).
"""

import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from geodata.accounts import (
    InvalidToken,
    MissingToken,
    OutsideArea,
    PermissionDenied,
    Principal,
    Role,
    WorkerMismatch,
    hash_token,
    is_well_formed,
)
from geodata.db import accounts_store
from geodata.db.sign_in import SessionLookup, session_by_hash
from geodata.errors import SchemaMissing
from geodata.passwords import (
    SessionExpired,
    SignInPolicy,
    hash_session_id,
    is_well_formed_session_id,
)
from grid_service.auth_memory import RateLimiter, TokenBucket, TokenCache
from grid_service.errors import error_response
from grid_service.session_cookie import (
    SAFE_METHODS,
    SessionCache,
    require_fetch_header,
    session_id_of,
)

__all__ = [
    "AdminPrincipal",
    "AuthConfig",
    "OptionalPrincipal",
    "Principal",
    "RateLimiter",
    "RequiredPrincipal",
    "Role",
    "TokenBucket",
    "TokenCache",
    "ensure_area",
    "ensure_worker",
    "install_auth",
    "may_read_personal",
    "require_roles",
    "scoped_code",
]

WallClock = Callable[[], datetime]
"""The time sessions start and expire by, and lock-outs run by: the system's, or a test's."""


def system_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How long a validated token is trusted without the database, the write limits, and
    how people sign in (settings: WANGGE_SESSION_*, WANGGE_SIGN_IN_*, WANGGE_PASSWORD_*)."""

    token_cache_ttl_s: float = 5.0
    write_rate_per_s: float = 20.0
    write_burst: float = 40.0
    #: Lock-out, session lifetime and the password rule.
    sign_in: SignInPolicy = field(default_factory=SignInPolicy)
    #: Sign-in and password-change attempts per client address: 10 a minute, 10 at once.
    sign_in_rate_per_s: float = 10 / 60
    sign_in_burst: float = 10.0
    #: Mark the session cookie Secure even on a request that came over http.
    session_cookie_secure: bool = False

    def __post_init__(self) -> None:
        if self.token_cache_ttl_s < 0 or self.write_rate_per_s <= 0 or self.write_burst < 1:
            raise ValueError("need token_cache_ttl_s >= 0, write_rate_per_s > 0, write_burst >= 1")
        if self.sign_in_rate_per_s <= 0 or self.sign_in_burst < 1:
            raise ValueError("need sign_in_rate_per_s > 0 and sign_in_burst >= 1")


@dataclass
class AuthState:
    """The per-app caches, rate limiters and clock (`app.state.auth`)."""

    config: AuthConfig = field(default_factory=AuthConfig)
    now: WallClock = system_now
    cache: TokenCache = field(init=False)
    sessions: SessionCache = field(init=False)
    limiter: RateLimiter = field(init=False)
    sign_in_limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.cache = TokenCache(self.config.token_cache_ttl_s)
        self.sessions = SessionCache(self.config.token_cache_ttl_s)
        self.limiter = RateLimiter(self.config.write_rate_per_s, self.config.write_burst)
        self.sign_in_limiter = RateLimiter(
            self.config.sign_in_rate_per_s, self.config.sign_in_burst
        )


def install_auth(
    app: FastAPI, config: AuthConfig | None = None, now: WallClock | None = None
) -> None:
    """Give `app` its caches, rate limiters and token check; call it in the app factory.

    Calling it again (tests do, to change the config or the clock) replaces them.
    """
    app.state.auth = AuthState(config or AuthConfig(), now or system_now)
    if not getattr(app.state, "token_check", False):
        app.add_middleware(TokenCheck)
        app.state.token_check = True


_STATE_LOCK = threading.Lock()


def auth_state(request: Request) -> AuthState:
    # Made with the defaults on first use when the factory did not call install_auth, so
    # that a router mounted on any app is never left open.
    state = getattr(request.app.state, "auth", None)
    if isinstance(state, AuthState):
        return state
    with _STATE_LOCK:
        state = getattr(request.app.state, "auth", None)
        if not isinstance(state, AuthState):
            state = AuthState()
            request.app.state.auth = state
        return state


# Declares the scheme in OpenAPI (the docs' Authorize button); the header is parsed below,
# because HTTPBearer would turn a malformed header into "no token" rather than a 401.
_bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from `wangge users add` or `wangge users token`.",
)


def _token_of(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not is_well_formed(token):
        raise InvalidToken("the Authorization header is not `Bearer <a wangge token>`")
    return token


def _lookup(engine: Engine, token_hash: str) -> Principal | None:
    try:
        with Session(engine) as session:
            return accounts_store.principal_for(session, token_hash)
    except ProgrammingError as exc:
        # An undefined table: the database was not migrated to revision 0003 yet.
        raise SchemaMissing("the accounts tables are missing; run `wangge db upgrade`") from exc


_RESOLVED: Final = "wangge.principal"
"""Key of the request's state holding its resolved caller, so it is looked up once."""
_STALE_SESSION: Final = "wangge.stale_session"
"""Set when the request's session cookie named no live session."""
_SESSION: Final = "wangge.session"
"""The live session the request's cookie named, when it is the caller."""


def current_session(request: Request) -> SessionLookup | None:
    """The live session the request was authenticated by, once its caller is resolved."""
    session: SessionLookup | None = request.scope.get("state", {}).get(_SESSION)
    return session


def _lookup_session(engine: Engine, session_hash: str) -> SessionLookup | None:
    try:
        with Session(engine) as session:
            return session_by_hash(session, session_hash)
    except ProgrammingError as exc:
        raise SchemaMissing("the sessions table is missing; run `wangge db upgrade`") from exc


async def _session_principal(request: Request, auth: AuthState) -> Principal | None:
    """The caller of the session cookie, None without a live one; CSRF checked for writes."""
    session_id = session_id_of(request)
    if session_id is None:
        return None
    lookup: SessionLookup | None = None
    if is_well_formed_session_id(session_id):
        session_hash = hash_session_id(session_id)
        cached = auth.sessions.get(session_hash)
        if cached is None:
            lookup = await run_in_threadpool(
                _lookup_session, request.app.state.engine, session_hash
            )
            auth.sessions.put(session_hash, lookup)
        else:
            (lookup,) = cached
    if lookup is None or auth.now() >= lookup.expires_at:
        request.scope.setdefault("state", {})[_STALE_SESSION] = True
        return None
    if request.method not in SAFE_METHODS:
        require_fetch_header(request)
    request.scope.setdefault("state", {})[_SESSION] = lookup
    return lookup.principal


async def resolve_principal(request: Request) -> Principal | None:
    """The caller of `request`, None without a token; InvalidToken for a bad one.

    Looked up once per request (by TokenCheck, then read by the dependencies). Only a
    token missing from the cache goes to the database, and so to the thread pool.
    """
    state = request.scope.setdefault("state", {})
    if _RESOLVED in state:
        resolved: Principal | None = state[_RESOLVED]
        return resolved
    token = _token_of(request)
    principal: Principal | None = None
    auth = auth_state(request)
    if token is not None:
        token_hash = hash_token(token)
        principal = auth.cache.get(token_hash)
        if principal is None:
            principal = await run_in_threadpool(_lookup, request.app.state.engine, token_hash)
            if principal is None:
                raise InvalidToken("the token is unknown or revoked")
            auth.cache.put(token_hash, principal)
    else:
        principal = await _session_principal(request, auth)
    state[_RESOLVED] = principal
    return principal


class TokenCheck:
    """ASGI middleware: a request presenting a token is refused unless the token is valid.

    Requests without an Authorization header pass untouched; the routes decide whether
    they need one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the token of an HTTP request that has one, then pass the request on."""
        if scope["type"] == "http" and any(
            name == b"authorization" for name, _ in scope.get("headers", ())
        ):
            try:
                await resolve_principal(Request(scope))
            except Exception as exc:  # answered as the routes' own errors would be
                await error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The dependencies below are async: FastAPI runs a sync dependency in the thread pool, a
# hop that costs more than a check in memory.
async def optional_principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
) -> Principal | None:
    """Dependency: the caller, None without a token; InvalidToken for a bad one."""
    return await resolve_principal(request)


OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]


async def required_principal(request: Request, principal: OptionalPrincipal) -> Principal:
    """Dependency: the caller; SessionExpired for a stale session cookie, else MissingToken."""
    if principal is None:
        if request.scope.get("state", {}).get(_STALE_SESSION):
            raise SessionExpired("the session has ended or expired; sign in again")
        raise MissingToken(
            "this needs a bearer token (Authorization: Bearer wg_...) or a signed-in session"
        )
    return principal


RequiredPrincipal = Annotated[Principal, Depends(required_principal)]


def require_roles(
    *roles: Role, limit_rate: bool = False
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: the caller if its role is one of `roles`, else PermissionDenied.

    With `limit_rate`, each call also spends one request of the token's write allowance.
    """
    allowed = frozenset(roles)
    names = " or ".join(role.value for role in roles)

    async def dependency(request: Request, principal: RequiredPrincipal) -> Principal:
        if principal.role not in allowed:
            raise PermissionDenied(f"this needs a {names} token, not a {principal.role}'s")
        if limit_rate:
            auth_state(request).limiter.take(principal.credential)
        return principal

    return dependency


AdminPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN))]


def ensure_area(principal: Principal, code: str) -> None:
    """Raise unless the caller may read under `code` (a supervisor's prefix, or admin)."""
    if principal.can_read_area(code):
        return
    if principal.role is Role.WORKER:
        raise PermissionDenied("a worker's token reads only its own patrols")
    raise OutsideArea(f"{code} is outside the area {principal.area_prefix}")


def ensure_worker(principal: Principal, worker_id: str) -> None:
    """Raise unless the caller is the worker `worker_id` itself."""
    if principal.can_act_as_worker(worker_id):
        return
    if principal.role is Role.WORKER:
        raise WorkerMismatch(f"the token is {principal.worker_id}'s, not {worker_id}'s")
    raise PermissionDenied(f"only a worker's own token acts as a worker, not a {principal.role}'s")


def scoped_code(principal: Principal, code: str | None) -> str | None:
    """The area code a listing is filtered by: a supervisor's own prefix when none is given.

    Raises unless the caller may read under the code; workers may not list areas.
    """
    if principal.role is Role.SUPERVISOR and not code:
        return principal.area_prefix
    if principal.role is Role.ADMIN:
        return code
    ensure_area(principal, code or "")
    return code


def may_read_personal(principal: Principal | None, code: str) -> bool:
    """Whether a read of personal data under `code` (staff phones, tracks) may include it."""
    return principal is not None and principal.can_read_area(code)
