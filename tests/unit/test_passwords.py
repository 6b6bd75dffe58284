"""The pure rules of people's sign-in: hashing, the password rule, lock-out, session ids,
and reading an accounts file."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodata.account_import import AccountImportRefused, Row, plan_import, read_rows
from geodata.accounts import AccountSpec, Role
from geodata.passwords import (
    ONE_TIME_ALPHABET,
    FailureState,
    SignInPolicy,
    WeakPassword,
    after_failure,
    check_new_password,
    hash_one_time_password,
    hash_password,
    hash_session_id,
    is_well_formed_session_id,
    locked_until,
    needs_rehash,
    new_one_time_password,
    new_session_id,
    verify_password,
)

POLICY = SignInPolicy()
T0 = datetime(2020, 9, 7, 9, tzinfo=UTC)


# --------------------------------------------------------------------------- hashing


def test_a_password_hash_is_argon2id_salted_and_verifies_only_its_password() -> None:
    first, second = hash_password("Walking-the-grid"), hash_password("Walking-the-grid")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != second  # salted
    assert verify_password(first, "Walking-the-grid")
    assert not verify_password(first, "walking-the-grid")
    assert not verify_password(None, "Walking-the-grid")  # no account, no password
    assert not verify_password("not a hash", "Walking-the-grid")
    assert not needs_rehash(first)


def test_the_same_password_typed_with_full_width_digits_is_the_same_password() -> None:
    assert verify_password(hash_password("grid-２０２０-walk"), "grid-2020-walk")


def test_a_one_time_password_is_cheaper_to_hash_and_flagged_for_rehash() -> None:
    password = new_one_time_password()
    hashed = hash_one_time_password(password)
    assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert verify_password(hashed, password)
    assert needs_rehash(hashed)


def test_one_time_passwords_are_four_groups_of_unambiguous_characters() -> None:
    passwords = {new_one_time_password() for _ in range(500)}
    assert len(passwords) == 500
    for password in passwords:
        groups = password.split("-")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert set("".join(groups)) <= set(ONE_TIME_ALPHABET)
    assert not set(ONE_TIME_ALPHABET) & set("il1o0")


def test_an_overlong_password_is_refused_before_it_is_hashed() -> None:
    hashed = hash_password("x" * 128)
    assert verify_password(hashed, "x" * 128)
    assert not verify_password(hashed, "x" * 129)


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("password", "old", "why"),
    [
        ("short-one", None, "at least 10"),
        ("y" * 129, None, "at most 128"),
        ("qwertyuiop", None, "guesser"),
        ("QwertyUiop", None, "guesser"),
        ("abababababab", None, "guesser"),  # two characters over and over
        ("xx-w00042-xx", None, "name"),
        ("the-old-password", "the-old-password", "replaces"),
        ("tab\there-is-bad", None, "printable"),
    ],
)
def test_the_password_rule_refuses(password: str, old: str | None, why: str) -> None:
    with pytest.raises(WeakPassword, match=why):
        check_new_password(password, name="W00042", old_password=old, policy=POLICY)


@pytest.mark.parametrize(
    "password", ["correct horse battery", "网格员每周巡查三次以上", "Walk-3x-a-week"]
)
def test_the_password_rule_takes_long_uncommon_passwords(password: str) -> None:
    check_new_password(password, name="W00042", old_password="another", policy=POLICY)


def test_the_minimum_length_is_a_setting() -> None:
    strict = SignInPolicy(min_password_length=16)
    with pytest.raises(WeakPassword, match="at least 16"):
        check_new_password("fifteen-chars-x", name="a", old_password=None, policy=strict)
    with pytest.raises(ValueError, match="8 to 128"):
        SignInPolicy(min_password_length=6)


# --------------------------------------------------------------------------- lock-out


def test_the_fifth_failure_in_a_row_locks_for_the_lockout() -> None:
    state = None
    for n in range(1, 6):
        state = after_failure(state, T0 + timedelta(minutes=n), POLICY)
        assert state.failures == n
    assert state is not None
    assert state.locked_until == T0 + timedelta(minutes=5) + POLICY.lockout
    assert locked_until(state, T0 + timedelta(minutes=6)) == state.locked_until
    assert locked_until(state, state.locked_until) is None  # the lock ends on time


def test_a_failure_while_locked_changes_nothing_and_one_after_starts_afresh() -> None:
    locked = FailureState(5, T0, T0 + POLICY.lockout)
    assert after_failure(locked, T0 + timedelta(minutes=1), POLICY) == locked
    after = after_failure(locked, T0 + POLICY.lockout, POLICY)
    assert (after.failures, after.locked_until) == (1, None)


@settings(max_examples=200)
@given(st.lists(st.integers(min_value=0, max_value=60 * 60), min_size=1, max_size=30))
def test_a_lock_needs_max_failures_each_within_the_lockout_of_the_last(gaps_s: list[int]) -> None:
    """Whatever the spacing, a name is locked only after max_failures close failures."""
    state: FailureState | None = None
    now = T0
    run = 0
    for gap in gaps_s:
        now += timedelta(seconds=gap)
        if locked_until(state, now) is not None:
            continue  # refused before its password is checked: nothing is counted
        quiet = (
            state is None
            or state.locked_until is not None
            or now - state.last_failed_at >= POLICY.lockout
        )
        run = 1 if quiet else run + 1
        state = after_failure(state, now, POLICY)
        assert state.failures == run
        assert (state.locked_until is not None) == (run >= POLICY.max_failures)


# --------------------------------------------------------------------------- session ids


def test_session_ids_are_prefixed_random_and_kept_as_their_sha256() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("ws_") and is_well_formed_session_id(i) for i in ids)
    one = next(iter(ids))
    assert len(hash_session_id(one)) == 64
    assert not is_well_formed_session_id("wg_" + one[3:])  # a token is not a session


# --------------------------------------------------------------------------- accounts files


def test_an_accounts_file_is_read_row_by_row_with_its_problems() -> None:
    text = (
        "\ufeffname,role,area,worker\n"
        "W00001,worker,,W00001\n"
        "sup-610302,supervisor,610302,\n"
        "bad,worker,,\n"
        "W00001,worker,,W00001\n"
    )
    rows, problems = read_rows(text)
    assert [(r.line, r.spec.name) for r in rows] == [(2, "W00001"), (3, "sup-610302")]
    assert [(p.line, p.name) for p in problems] == [(4, "bad"), (5, "W00001")]
    assert "line 2" in problems[1].reason


def test_a_plan_keeps_what_exists_as_described_and_refuses_any_conflict() -> None:
    rows = [
        Row(2, AccountSpec("W00001", Role.WORKER, worker_id="W00001")),
        Row(3, AccountSpec("desk", Role.ADMIN)),
    ]
    plan = plan_import(
        rows,
        existing={"desk": AccountSpec("desk", Role.ADMIN)},
        known_workers={"W00001"},
        known_areas=set(),
    )
    assert [r.line for r in plan.create] == [2]
    assert [r.line for r in plan.unchanged] == [3]
    with pytest.raises(AccountImportRefused) as refused:
        plan_import(
            rows,
            existing={"desk": AccountSpec("desk", Role.SUPERVISOR, area_prefix="610302")},
            known_workers=set(),
            known_areas=set(),
        )
    assert [(p.line, p.name) for p in refused.value.problems] == [(2, "W00001"), (3, "desk")]
