"""What PostgreSQL and every JSON reader can hold: the checks an event's text and extra
fields pass before it is accepted.

Pure. `geodata.events` turns the problem found here into an `invalid_field` refusal.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Final

MAX_NESTING: Final = 32
"""Deepest nesting of objects and arrays in an event's extra fields."""

MAX_EXTRA_INT: Final = 2**63 - 1
"""Largest magnitude of an integer in an extra field: what every JSON reader can hold."""


class Unstorable(ValueError):
    """A value the database or a JSON reader could not hold; the message says where."""


def _check_text(value: str, where: str) -> None:
    # PostgreSQL's text and jsonb cannot hold NUL, and a lone surrogate is no UTF-8.
    if "\x00" in value:
        raise Unstorable(f"{where}: contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable(f"{where}: contains a lone surrogate, not UTF-8") from None


def _label(name: str) -> str:
    # The message names the field; a name with NUL or a surrogate is shown escaped.
    return name if name.isprintable() else ascii(name)


def check_storable(texts: Iterable[tuple[str, object]], extras: Mapping[str, object]) -> None:
    """Raise Unstorable for the first NUL or surrogate in a (name, value) text or in the
    extra fields, or an extra nested too deep or holding a number JSON readers cannot hold."""
    for name, value in texts:
        if isinstance(value, str):
            _check_text(value, name)
    stack: list[tuple[str, object, int]] = []
    for name, value in extras.items():
        _check_text(name, f"{_label(name)} (a field name)")
        stack.append((_label(name), value, 1))
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_NESTING:
            raise Unstorable(f"{where}: nested deeper than {MAX_NESTING}")
        if isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and abs(value) > MAX_EXTRA_INT:
            raise Unstorable(f"{where}: integer out of range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise Unstorable(f"{where}: not a finite number")
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, f"{where}.{_label(key)} (a field name)")
                stack.append((f"{where}.{_label(key)}", item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value))
