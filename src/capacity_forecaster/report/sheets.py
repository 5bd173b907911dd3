"""Write-only worksheet building blocks (openpyxl): cell values, styled cells, header rows, streamed rows, tables."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.table import Table, TableStyleInfo

from capacity_forecaster.report import style
from capacity_forecaster.report.data import not_available
from capacity_forecaster.report.text import labelled, told_columns

# A write-only worksheet (openpyxl does not export its class publicly).
Worksheet = Any


class _TextSheet(WriteOnlyWorksheet):
    """A write-only sheet that stores text starting with ``=`` as text: openpyxl makes it a formula, so a server id
    such as ``=HYPERLINK("http://...")`` from an export became a live link in five sheets (helper-51)."""

    def append(self, row: Any) -> None:
        super().append([_as_text(self, value) for value in row])


def _as_text(ws: Worksheet, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("="):
        value = WriteOnlyCell(ws, value)
    if isinstance(value, Cell) and value.data_type == "f":
        value.data_type = "s"
    return value


class TextWorkbook(Workbook):
    """A write-only workbook of ``_TextSheet`` sheets: nothing read from the lake is ever written as a formula."""

    def __init__(self) -> None:
        super().__init__(write_only=True)

    def create_sheet(self, title: str | None = None, index: int | None = None) -> Worksheet:
        sheet = _TextSheet(parent=self, title=title)
        self._add_sheet(sheet=sheet, index=index)
        return sheet

_HEADER_FILL = PatternFill("solid", fgColor=style.NAVY.lstrip("#"))
_HEADER_FONT = Font(bold=True, color="FFFFFF")


def cell_value(value: Any) -> Any:
    """A value openpyxl can store: dates as dates, NaN/NaT as empty, numpy scalars as Python."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, np.generic):
        return value.item()
    return value


def styled(ws: Worksheet, value: Any, *, header: bool = False, fmt: str | None = None,
           fill: str | None = None, font: Font | None = None) -> WriteOnlyCell:
    """A cell with a header style, number format, fill or font."""
    cell = WriteOnlyCell(ws, cell_value(value))
    if header:
        cell.fill, cell.font = _HEADER_FILL, _HEADER_FONT
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    if fmt:
        cell.number_format = fmt
    if fill:
        cell.fill = PatternFill("solid", fgColor=fill)
    if font is not None:
        cell.font = font
    return cell


NAME_COLUMNS = ("hostname", "application", "environment")
# Text columns are fitted to the longest of their first FIT_ROWS values, up to FIT_MAX_WIDTH characters.
FIT_ROWS = 500
FIT_MAX_WIDTH = 40


def write_frame(ws: Worksheet, frame: pd.DataFrame, columns: dict[str, str], name: str,
                formats: dict[str, str] | None = None, widths: dict[str, int] | None = None) -> list[str]:
    """Write ``frame`` as an Excel table with friendly headers and readable machine words (``text.labelled``:
    ``already breaching``, not ``already_breaching``); write-only: streams the rows.

    Returns:
        The lake columns written, in sheet order.
    """
    # Name columns that tell nothing (an inventory of ids only: empty hostnames, "unknown" applications) are left out.
    named = [c for c in NAME_COLUMNS if c in frame.columns]
    silent = [c for c in named if c not in told_columns(frame, named)] if len(frame) else []
    shown = labelled(frame[[c for c in columns if c in frame.columns and c not in silent]])
    fitted = fitted_widths(shown)
    given = widths or {}
    present = header(ws, frame.columns.drop(silent), columns,
                     {c: max(fitted.get(c, 0), given.get(c, 0)) for c in {*fitted, *given}})
    append_rows(ws, shown, present, formats)
    add_table(ws, name, present, columns, len(frame))
    return present


def fitted_widths(frame: pd.DataFrame) -> dict[str, int]:
    """Text columns as wide as their first values (server ids of 13-17 characters were cut at 11), within bounds."""
    return {c: min(FIT_MAX_WIDTH, max(len(str(v)) for v in frame[c].head(FIT_ROWS)) + 2)
            for c in frame.columns if len(frame) and frame[c].dtype == object}


def header(ws: Worksheet, available: Any, columns: dict[str, str], widths: dict[str, int] | None = None) -> list[str]:
    """Column widths, frozen panes and the header row of the ``columns`` in ``available``; returns those columns.

    A column's width is ``widths``'s (at least its header's, up to 28, where that is larger), else its header's
    (11 to 28 characters)."""
    present = [c for c in columns if c in available]
    widths = widths or {}
    for index, column in enumerate(present, start=1):
        header = columns[column]
        own = max(11, min(len(header) + 3, 28))
        ws.column_dimensions[get_column_letter(index)].width = max(widths[column], own) if column in widths else own
    ws.freeze_panes = "B2"
    ws.append([styled(ws, columns[c], header=True) for c in present])
    return present


def append_rows(ws: Worksheet, frame: pd.DataFrame, present: list[str], formats: dict[str, str] | None = None) -> None:
    """Append the rows of ``frame`` (its ``present`` columns), ``formats`` giving number formats by column."""
    formatted = [(i, (formats or {})[c]) for i, c in enumerate(present) if c in (formats or {})]
    for row in frame[present].itertuples(index=False, name=None):
        values = [cell_value(v) for v in row]
        for i, fmt in formatted:
            values[i] = styled(ws, values[i], fmt=fmt)
        ws.append(values)


def add_table(ws: Worksheet, name: str, present: list[str], columns: dict[str, str], rows: int) -> None:
    """Make the header and the ``rows`` below it an Excel table (none without rows)."""
    if not rows:
        return
    table = Table(displayName=name, ref=f"A1:{get_column_letter(len(present))}{rows + 1}")
    table.tableStyleInfo = TableStyleInfo(name="TableStyleLight9", showRowStripes=True)
    table._initialise_columns()
    for column, key in zip(table.tableColumns, present, strict=True):
        column.name = columns[key]
    with warnings.catch_warnings():
        # openpyxl warns that write-only tables need their columns set by hand, which is done above.
        warnings.simplefilter("ignore", UserWarning)
        ws.add_table(table)


def unavailable(ws: Worksheet, table: str) -> None:
    """A sheet saying which stage to run for its absent table."""
    ws.column_dimensions["A"].width = 60
    ws.append([styled(ws, not_available(table), font=Font(italic=True, color="6B7280"))])
