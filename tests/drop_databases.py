"""Drop a test session's databases: `python -m tests.drop_databases ADMIN_URL NAME...`.

PostgreSQL makes each DROP DATABASE wait for a checkpoint, seconds each on a busy server,
and a session makes hundreds: dropped at the session's end they held its last test for a
minute. The session starts this in a process of its own and ends; the drops waiting at
the same time share their checkpoints.
"""

import sys
from concurrent.futures import ThreadPoolExecutor

import psycopg

DROPPING_AT_ONCE = 8


def drop_databases(admin_url: str, names: list[str]) -> None:
    """Drop `names` (if they exist, their connections ended), several at once."""

    def drop(name: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    with ThreadPoolExecutor(DROPPING_AT_ONCE) as pool:
        list(pool.map(drop, names))


if __name__ == "__main__":
    drop_databases(sys.argv[1], sys.argv[2:])
