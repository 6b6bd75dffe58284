"""The one writer of every export: text a spreadsheet would run as a formula stays text."""

import csv
import io

from openpyxl import load_workbook

from geodata.table_files import csv_text, xlsx_bytes

HEADER = ("code", "name", "patrols", "change")
ROWS = [
    ("610302001001001", '=HYPERLINK("http://x","点我")', 3, -1),
    ("610302001001002", "@SUM(A1)", 0, 2.5),
    ("610302001001003", "-2+3", 1, 0),
    ("610302001001004", "渭滨区 1 号网格", 4, -0.5),
]


def test_csv_quotes_text_that_would_start_a_formula_and_leaves_numbers() -> None:
    rows = list(csv.reader(io.StringIO(csv_text(HEADER, ROWS).removeprefix("\ufeff"))))
    assert rows[0] == list(HEADER)
    assert [row[1] for row in rows[1:]] == [
        '\'=HYPERLINK("http://x","点我")',
        "'@SUM(A1)",
        "'-2+3",
        "渭滨区 1 号网格",
    ]
    # Negative numbers are numbers, not text: written as they are.
    assert [row[3] for row in rows[1:]] == ["-1", "2.5", "0", "-0.5"]


def test_xlsx_keeps_a_formula_like_name_as_the_text_typed_and_numbers_as_numbers() -> None:
    sheet = load_workbook(io.BytesIO(xlsx_bytes(HEADER, ROWS, "grids"))).active
    assert sheet is not None
    first = sheet.cell(row=2, column=2)
    assert (first.value, first.data_type) == ('=HYPERLINK("http://x","点我")', "s")
    assert [sheet.cell(row=r, column=2).value for r in range(3, 6)] == [
        "@SUM(A1)",
        "-2+3",
        "渭滨区 1 号网格",
    ]
    assert [sheet.cell(row=r, column=4).value for r in range(2, 6)] == [-1, 2.5, 0, -0.5]
