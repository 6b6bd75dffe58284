"""A header and rows as a file a spreadsheet opens: CSV text or bytes, or an XLSX workbook.

One writer for every export (compliance, coverage, evaluation) and the commands that
write the same files. The CSV has RFC 4180 line ends and is UTF-8 with a byte-order
mark, which Excel and WPS need to read Chinese names without asking; in the workbook,
numbers stay numbers. Text a spreadsheet would run as a formula (a name typed as
"=HYPERLINK(...)" by whoever named a grid or a worker) stays text in both.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any, Final

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

BOM: Final = "\ufeff"
#: Excel's limit on a sheet's name.
SHEET_NAME_MAX: Final = 31
#: What starts a formula in Excel, WPS or LibreOffice when a cell is read as typed.
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """`value` for a CSV cell: text that would start a formula gets a leading quote, which
    spreadsheets show as text; numbers (a negative one too) are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _xlsx_cell(sheet: WriteOnlyWorksheet, value: Any) -> Any:
    # openpyxl stores any text starting with "=" as a formula; typed as a string it stays text.
    if isinstance(value, str) and value.startswith("="):
        cell = WriteOnlyCell(sheet, value=value)
        cell.data_type = "s"
        return cell
    return value


def csv_text(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The header and rows as CSV text, starting with the byte-order mark."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(value) for value in header])
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return out.getvalue()


def csv_bytes(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> bytes:
    """The header and rows as a UTF-8 CSV file with a byte-order mark."""
    return csv_text(header, rows).encode("utf-8")


def xlsx_bytes(header: Sequence[Any], rows: Iterable[Sequence[Any]], title: str) -> bytes:
    """The header and rows as the one worksheet (named `title`, cut to 31) of an .xlsx."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title[:SHEET_NAME_MAX])
    sheet.append([_xlsx_cell(sheet, value) for value in header])
    for row in rows:
        sheet.append([_xlsx_cell(sheet, value) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
