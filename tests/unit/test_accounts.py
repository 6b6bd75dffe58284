"""The pure rules of accounts: tokens, role invariants, scopes, and the rate limiter."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodata.accounts import (
    TOKEN_PREFIX,
    InvalidAccount,
    OutsideArea,
    PermissionDenied,
    Principal,
    Role,
    WorkerMismatch,
    account_spec,
    hash_token,
    is_well_formed,
    new_token,
)
from grid_service.auth import (
    RateLimiter,
    TokenBucket,
    TokenCache,
    ensure_area,
    ensure_worker,
    may_read_personal,
    scoped_code,
)
from grid_service.errors import RateLimited

DIGITS = st.text(alphabet="0123456789", max_size=15)
AREA = st.sampled_from([6, 9, 12]).flatmap(
    lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
)
WORKER_ID = st.integers(0, 99_999).map(lambda n: f"W{n:05d}")


def supervisor(prefix: str) -> Principal:
    """A supervisor of the area `prefix`."""
    return Principal(1, 1, "sup", Role.SUPERVISOR, area_prefix=prefix)


def worker(worker_id: str) -> Principal:
    """The account of worker `worker_id`."""
    return Principal(2, 2, "w", Role.WORKER, worker_id=worker_id)


ADMIN = Principal(3, 3, "admin", Role.ADMIN)


# --------------------------------------------------------------------------- tokens


def test_tokens_are_prefixed_well_formed_and_never_repeat() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(t.startswith(TOKEN_PREFIX) and is_well_formed(t) for t in tokens)
    assert {len(t) for t in tokens} == {len(TOKEN_PREFIX) + 43}  # 256 bits, base64url


def test_a_token_is_stored_as_its_sha256_which_does_not_contain_it() -> None:
    token = new_token()
    stored = hash_token(token)
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert stored == hash_token(token)  # deterministic: the hash is the lookup key
    assert len(stored) == 64
    assert token not in stored
    assert stored != hash_token(new_token())


@pytest.mark.parametrize(
    "token",
    [
        "",
        "wg_",
        "wg_short",
        "WG_" + "a" * 43,
        "wg_" + "a" * 42,
        "wg_" + "a" * 44,
        "wg_" + "a" * 42 + "=",
        "wg_" + "a" * 42 + " ",
        "xx_" + "a" * 43,
        "a" * 46,
    ],
)
def test_malformed_tokens_are_refused_without_a_lookup(token: str) -> None:
    assert not is_well_formed(token)


# --------------------------------------------------------------------------- accounts


@pytest.mark.parametrize(
    ("role", "area", "worker_id"),
    [
        ("worker", None, "W00042"),
        ("supervisor", "610302", None),
        ("supervisor", "610302001", None),
        ("supervisor", "610302001001", None),
        ("admin", None, None),
    ],
)
def test_each_role_has_exactly_its_own_fields(
    role: str, area: str | None, worker_id: str | None
) -> None:
    spec = account_spec(" Li Hua ", role, area, worker_id)
    assert (spec.name, spec.role.value, spec.area_prefix, spec.worker_id) == (
        "Li Hua",
        role,
        area,
        worker_id,
    )


@pytest.mark.parametrize(
    ("name", "role", "area", "worker_id"),
    [
        ("w", "worker", None, None),
        ("w", "worker", None, "42"),
        ("w", "worker", "610302", "W00042"),
        ("s", "supervisor", None, None),
        ("s", "supervisor", "", None),
        ("s", "supervisor", "6103", None),
        ("s", "supervisor", "610302001001001", None),  # a grid is not a supervisor's area
        ("s", "supervisor", "61030200100X", None),
        ("s", "supervisor", "610302", "W00042"),
        ("a", "admin", "610302", None),
        ("a", "admin", None, "W00042"),
        ("r", "root", None, None),
        ("", "admin", None, None),
        ("   ", "admin", None, None),
        ("x" * 65, "admin", None, None),
        ("tab\tname", "admin", None, None),
    ],
)
def test_accounts_breaking_their_roles_rules_are_invalid(
    name: str, role: str, area: str | None, worker_id: str | None
) -> None:
    with pytest.raises(InvalidAccount):
        account_spec(name, role, area, worker_id)


def test_a_supervisor_principal_without_an_area_cannot_exist() -> None:
    # An empty prefix would be a prefix of every code: the whole city.
    with pytest.raises(ValueError, match="area prefix"):
        Principal(1, 1, "sup", Role.SUPERVISOR, area_prefix="")
    with pytest.raises(ValueError, match="worker id"):
        Principal(1, 1, "w", Role.WORKER)


# --------------------------------------------------------------------------- scopes


@given(prefix=AREA, code=DIGITS)
def test_a_supervisor_reads_a_code_iff_it_starts_with_its_prefix(prefix: str, code: str) -> None:
    assert supervisor(prefix).can_read_area(code) == code.startswith(prefix)


@given(prefix=AREA, suffix=DIGITS)
def test_a_supervisor_reads_everything_under_its_prefix(prefix: str, suffix: str) -> None:
    assert supervisor(prefix).can_read_area(prefix + suffix)


@given(prefix=AREA, cut=st.integers(0, 11))
def test_a_supervisor_never_reads_the_area_above_its_own(prefix: str, cut: int) -> None:
    assert not supervisor(prefix).can_read_area(prefix[: min(cut, len(prefix) - 1)])


@given(code=DIGITS, worker_id=WORKER_ID)
def test_admin_reads_every_area_and_a_worker_none(code: str, worker_id: str) -> None:
    assert ADMIN.can_read_area(code)
    assert not worker(worker_id).can_read_area(code)


@given(me=WORKER_ID, other=WORKER_ID, prefix=AREA)
def test_only_a_workers_own_token_acts_as_that_worker(me: str, other: str, prefix: str) -> None:
    assert worker(me).can_act_as_worker(other) == (me == other)
    assert not ADMIN.can_act_as_worker(other)
    assert not supervisor(prefix).can_act_as_worker(other)


@given(
    me=WORKER_ID,
    other=WORKER_ID,
    prefix=AREA,
    grids=st.lists(st.text(alphabet="0123456789", min_size=15, max_size=15), max_size=4),
)
def test_a_worker_is_read_by_itself_by_supervisors_of_its_grids_and_by_admin(
    me: str, other: str, prefix: str, grids: list[str]
) -> None:
    assert worker(me).can_read_worker(other, grids) == (me == other)
    assert supervisor(prefix).can_read_worker(other, grids) == any(
        g.startswith(prefix) for g in grids
    )
    assert ADMIN.can_read_worker(other, grids)


@pytest.mark.parametrize(
    ("principal", "source", "reporter", "allowed"),
    [
        (worker("W00001"), "worker", "W00001", True),
        (worker("W00001"), "worker", "W00002", False),
        (worker("W00001"), "resident", None, False),
        (worker("W00001"), "hotline", None, False),
        (supervisor("610302"), "hotline", None, True),
        (supervisor("610302"), "resident", "13800000000", True),
        (supervisor("610302"), "worker", "W00001", False),
        (ADMIN, "sensor", None, True),
        (ADMIN, "worker", "W00001", False),
    ],
)
def test_who_may_report_an_incident_as_which_source(
    principal: Principal, source: str, reporter: str | None, allowed: bool
) -> None:
    assert principal.may_report_as(source, reporter) is allowed


def test_scope_helpers_raise_the_errors_mapped_to_403() -> None:
    ensure_area(supervisor("610302"), "610302001")
    with pytest.raises(OutsideArea):
        ensure_area(supervisor("610302"), "610303")
    with pytest.raises(PermissionDenied) as refused:
        ensure_area(worker("W00001"), "610302")
    assert type(refused.value) is PermissionDenied
    ensure_worker(worker("W00001"), "W00001")
    with pytest.raises(WorkerMismatch):
        ensure_worker(worker("W00001"), "W00002")
    with pytest.raises(PermissionDenied):
        ensure_worker(ADMIN, "W00001")


def test_a_listing_defaults_to_the_supervisors_area_and_refuses_others() -> None:
    assert scoped_code(supervisor("610302001"), None) == "610302001"
    assert scoped_code(supervisor("610302001"), "") == "610302001"
    assert scoped_code(supervisor("610302001"), "610302001002") == "610302001002"
    with pytest.raises(OutsideArea):
        scoped_code(supervisor("610302001"), "610302")  # the district above
    with pytest.raises(PermissionDenied):
        scoped_code(worker("W00001"), None)
    assert scoped_code(ADMIN, None) is None
    assert scoped_code(ADMIN, "610303") == "610303"


def test_personal_data_is_never_for_anonymous_callers() -> None:
    assert not may_read_personal(None, "610302001001001")
    assert may_read_personal(supervisor("610302"), "610302001001001")
    assert not may_read_personal(supervisor("610303"), "610302001001001")
    assert not may_read_personal(worker("W00001"), "610302001001001")


# --------------------------------------------------------------------------- rate limits


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(100.0) == 0.0  # refills to the burst, never beyond
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.5)]


@given(requests=st.lists(st.floats(0, 10, allow_nan=False), max_size=200))
def test_a_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(
    requests: list[float],
) -> None:
    times = sorted(requests)
    bucket = TokenBucket(rate_per_s=5.0, burst=4.0, now=0.0)
    allowed = sum(1 for t in times if bucket.take(t) == 0.0)
    assert allowed <= 4 + 5.0 * (times[-1] if times else 0.0) + 1e-9


def test_the_limiter_is_per_token_and_says_when_to_retry() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=2.0, clock=clock)
    limiter.take(1)
    limiter.take(1)
    with pytest.raises(RateLimited) as limited:
        limiter.take(1)
    assert limited.value.retry_after_s == pytest.approx(1.0)
    limiter.take(2)  # another token has its own bucket
    clock.now += 1.0
    limiter.take(1)


def test_cached_tokens_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = TokenCache(ttl_s=5.0, clock=clock)
    cache.put("h", ADMIN)
    assert cache.get("h") is ADMIN
    clock.now += 4.9
    assert cache.get("h") is ADMIN
    clock.now += 0.1
    assert cache.get("h") is None
    uncached = TokenCache(ttl_s=0.0, clock=clock)  # a zero TTL: every request looks up
    uncached.put("h", ADMIN)
    assert uncached.get("h") is None
