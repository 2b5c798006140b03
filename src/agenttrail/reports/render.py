"""A report as people read it (tables), as tools read it (JSON, the API's shape), or one section as CSV."""

from __future__ import annotations

import sys
from typing import Any

import orjson

from agenttrail.query.output import render
from agenttrail.reports.base import Report


def render_report(rep: Report, fmt: str, *, section: str | None = None, out: Any = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(orjson.dumps(rep.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if fmt == "csv":
        s = rep.section(section) if section else rep.sections[0]
        render(s.columns, s.rows, "csv", out=out)
        return
    for s in rep.sections:
        if section and s.name != section:
            continue
        render(s.columns, s.rows, "table", title=f"{s.title} [{s.name}]", out=out)
    for note in rep.notes:
        out.write(f"note: {note}\n")
