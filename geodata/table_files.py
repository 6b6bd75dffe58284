"""A header and rows as a file a spreadsheet opens: CSV text or bytes, or an XLSX workbook.

One writer for every export (compliance, coverage, evaluation) and the commands that
write the same files. The CSV has RFC 4180 line ends and is UTF-8 with a byte-order
mark, which Excel and WPS need to read Chinese names without asking; in the workbook,
numbers stay numbers.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, Final

from openpyxl import Workbook

BOM: Final = "\ufeff"
#: Excel's limit on a sheet's name.
SHEET_NAME_MAX: Final = 31


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The header and rows as CSV text, starting with the byte-order mark."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def csv_bytes(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> bytes:
    """The header and rows as a UTF-8 CSV file with a byte-order mark."""
    return csv_text(header, rows).encode("utf-8")


def xlsx_bytes(header: Sequence[Any], rows: Iterable[Sequence[Any]], title: str) -> bytes:
    """The header and rows as the one worksheet (named `title`, cut to 31) of an .xlsx."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:SHEET_NAME_MAX])
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
