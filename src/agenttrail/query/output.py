"""Rendering rows as a table for people, or JSON / CSV for tools."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agenttrail.query.readonly_sql import jsonable

FORMATS = ("table", "json", "csv")


def render(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str,
    *,
    title: str | None = None,
    out: Any = None,
) -> None:
    out = out or sys.stdout
    if fmt == "json":
        records = [dict(zip(columns, (jsonable(v) for v in r), strict=True)) for r in rows]
        out.write(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if v is None else jsonable(v) for v in r])
        out.write(buf.getvalue())
    else:
        t = Table(*columns, title=title)
        for r in rows:
            t.add_row(*(Text(_cell(v)) for v in r))  # values are data, never markup
        Console(file=out).print(t)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.6f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.2f}"
    return str(jsonable(v))
