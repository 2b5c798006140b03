"""One entry for every export, as `agenttrail export` and `GET /api/v1/export` call it."""

from __future__ import annotations

from typing import TextIO

from sqlalchemy import Engine

from agenttrail.exports import FORMATS
from agenttrail.exports.focus import write_focus
from agenttrail.exports.security import write_security
from agenttrail.exports.tables import WHAT, write_csv, write_ndjson
from agenttrail.reports.base import FilterError, Filters, check_filters

CONTENT_FORMATS = frozenset({"security"})
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/x-ndjson",
    "focus": "text/csv; charset=utf-8",
    "security": "application/x-ndjson",
}


class ExportError(ValueError):
    pass


def export(engine: Engine, fmt: str, f: Filters, out: TextIO, *, what: str = "sessions") -> int:
    """Write the export to `out`; returns the number of records."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    try:
        check_filters(engine, f)
    except FilterError as e:
        raise ExportError(str(e)) from None
    if fmt in ("csv", "json"):
        if what not in WHAT:
            raise ExportError(f"cannot export {what!r}; choose one of {', '.join(WHAT)}")
        return (write_csv if fmt == "csv" else write_ndjson)(engine, what, f, out)
    if fmt == "focus":
        if f.repo is not None:
            raise ExportError("the FOCUS export is per team, project and model; --repo does not apply")
        return write_focus(engine, f, out)
    return write_security(engine, f, out)
