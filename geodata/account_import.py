"""A city's accounts from a CSV file: read and checked as a whole, before anything is stored.

The file has a header with the columns `name,role,area,worker` (the arguments of
`wangge users add`; `area` for supervisors, `worker` for workers, empty otherwise). Every
row is checked by `geodata.accounts.account_spec`; a name twice in the file, a worker or
an area the city does not have, and a name already taken by a different account are
problems too. One problem refuses the whole file, so a refused import changes nothing;
an account that exists already exactly as the row describes is left as it is (its
password too), so importing the same file again changes nothing.
"""

import csv
import io
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from geodata.accounts import AccountSpec, InvalidAccount, account_spec
from geodata.errors import WanggeError

COLUMNS: Final = ("name", "role", "area", "worker")
REQUIRED_COLUMNS: Final = ("name", "role")
MAX_ROWS: Final = 100_000
"""More rows than any city has staff: a bigger file is a mistake, refused before reading on."""
MAX_FILE_BYTES: Final = 16 * 2**20


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one line of the file cannot be imported."""

    line: int
    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    """A checked row: its line in the file and the account it describes."""

    line: int
    spec: AccountSpec


class AccountImportRefused(WanggeError):
    """The file has problems; nothing was stored."""

    code = "account_import_refused"

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s); nothing was imported")
        self.problems = problems


@dataclass
class ImportPlan:
    """What an import will do: the accounts to create, and those already there as they are."""

    create: list[Row] = field(default_factory=list)
    unchanged: list[Row] = field(default_factory=list)


def read_rows(text: str) -> tuple[list[Row], list[Problem]]:
    """The file's rows checked one by one; problems of the file as a whole are line 1."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))  # Excel writes a BOM
    header = [column.strip() for column in reader.fieldnames or []]
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        return [], [Problem(1, "", f"the header lacks {', '.join(missing)}; it is {COLUMNS}")]
    unknown = [column for column in header if column not in COLUMNS]
    if unknown:
        return [], [Problem(1, "", f"unknown columns {unknown}; the columns are {COLUMNS}")]
    reader.fieldnames = header
    rows: list[Row] = []
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if len(rows) + len(problems) >= MAX_ROWS:
            problems.append(Problem(line, "", f"more than {MAX_ROWS} rows"))
            break
        cells = {column: (record.get(column) or "").strip() for column in COLUMNS}
        name = cells["name"]
        try:
            spec = account_spec(name, cells["role"], cells["area"] or None, cells["worker"] or None)
        except InvalidAccount as exc:
            problems.append(Problem(line, name, str(exc)))
            continue
        if spec.name in first_line:
            problems.append(Problem(line, name, f"the name is on line {first_line[spec.name]} too"))
            continue
        first_line[spec.name] = line
        rows.append(Row(line, spec))
    if not rows and not problems:
        problems.append(Problem(1, "", "the file holds no account"))
    return rows, problems


def plan_import(
    rows: Iterable[Row],
    *,
    existing: Mapping[str, AccountSpec],
    known_workers: Container[str],
    known_areas: Container[str],
    problems_read: Iterable[Problem] = (),
) -> ImportPlan:
    """Sort checked rows into new and unchanged accounts; raise with every problem found,
    those `read_rows` found included.

    `existing` holds the accounts already stored under the rows' names.
    """
    plan = ImportPlan()
    problems = list(problems_read)
    for row in rows:
        spec = row.spec
        stored = existing.get(spec.name)
        if stored is not None:
            if stored == spec:
                plan.unchanged.append(row)
            else:
                taken = f"an account has the name already, {_describe(stored)}"
                problems.append(Problem(row.line, spec.name, taken))
            continue
        if spec.worker_id is not None and spec.worker_id not in known_workers:
            unknown = f"no worker has the id {spec.worker_id}"
            problems.append(Problem(row.line, spec.name, unknown))
        elif spec.area_prefix is not None and spec.area_prefix not in known_areas:
            unknown = f"no area has the code {spec.area_prefix}"
            problems.append(Problem(row.line, spec.name, unknown))
        else:
            plan.create.append(row)
    if problems:
        raise AccountImportRefused(sorted(problems, key=lambda problem: problem.line))
    return plan


def _describe(spec: AccountSpec) -> str:
    if spec.worker_id is not None:
        return f"a {spec.role} of {spec.worker_id}"
    if spec.area_prefix is not None:
        return f"a {spec.role} of {spec.area_prefix}"
    return f"an {spec.role}" if spec.role.value[0] in "aeiou" else f"a {spec.role}"
