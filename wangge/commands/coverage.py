"""`wangge coverage`: which grids the walks reach, from what the pipeline stored."""

from pathlib import Path
from typing import Annotated

import typer

from wangge.commands.common import console, fail
from wangge.settings import DatabaseSettings, PatrolSettings


def coverage(
    from_: Annotated[
        str | None,
        typer.Option("--from", help="first local day, YYYY-MM-DD (default: 6 days before --to)"),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="last local day, included (default: today)")
    ] = None,
    level: Annotated[str, typer.Option(help="grid, community, street or district")] = "grid",
    code: Annotated[
        str | None, typer.Option(help="district, street, community or grid code prefix")
    ] = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="also write the table as CSV")] = None,
    xlsx: Annotated[
        Path | None, typer.Option("--xlsx", help="also write the table as XLSX")
    ] = None,
) -> None:
    """Print each grid's visits, last visit and covered share in a period (or per area)."""
    from geodata.coverage import CoverageConfig
    from geodata.errors import WanggeError
    from wangge.coverage_cli import print_coverage

    if level not in ("grid", "community", "street", "district"):
        raise fail(f"--level is grid, community, street or district, not {level!r}")
    try:
        print_coverage(
            DatabaseSettings().url,
            from_,
            to,
            level,  # type: ignore[arg-type]
            code,
            console=console,
            csv_path=csv,
            xlsx_path=xlsx,
            config=CoverageConfig(timezone=PatrolSettings().compliance_config().timezone),
        )
    except (WanggeError, ValueError) as exc:
        raise fail(str(exc)) from exc
