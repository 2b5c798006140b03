"""`agenttrail export`: CSV / NDJSON of sessions or calls, FinOps FOCUS 1.2, and the security NDJSON."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

import typer
from sqlalchemy import Engine

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, engine_for, err_console, fail, friendly
from agenttrail.cli.report import REPO, SINCE, TEAM, UNTIL, filters_from
from agenttrail.clock import SystemClock
from agenttrail.exports import FORMATS
from agenttrail.exports.run import CONTENT_FORMATS, ExportError, export
from agenttrail.query.access import audit, local_principal
from agenttrail.reports.base import Filters


def register(app: typer.Typer) -> None:
    @app.command("export", rich_help_panel="Reports")
    @friendly
    def export_cmd(
        fmt: str = typer.Option(..., "--format", "-f", help="csv, json (NDJSON), focus (FOCUS 1.2 CSV) or security."),
        what: str = typer.Option("sessions", "--what", help="For csv and json: sessions or calls."),
        since: str | None = SINCE,
        until: str | None = UNTIL,
        team: str | None = TEAM,
        repo: str | None = REPO,
        output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of standard output."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Export the record for finance (csv, json, focus) or security (one NDJSON record per session,
        secrets redacted).

        Example: agenttrail export --format focus --since 2026-05-01 --until 2026-05-31 -o focus.csv
        """
        if fmt not in FORMATS:
            fail(f"--format must be one of {', '.join(FORMATS)}")
        f = filters_from(since, until, team, repo)
        engine = engine_for(db, config)
        if fmt in CONTENT_FORMATS:
            audit(engine, local_principal(), "export", {"format": fmt, **f.as_dict()}, SystemClock().now())
        if output is not None and output.is_dir():
            fail(f"-o {output} is a folder; name a file in it")
        tmp = None if output is None else output.with_name(output.name + ".partial")
        try:
            if output is None or tmp is None:
                n = _write(engine, fmt, f, sys.stdout, what)
            else:
                with tmp.open("w", encoding="utf-8", newline="") as fh:
                    n = _write(engine, fmt, f, fh, what)
                tmp.replace(output)  # a reader never sees half a file
        except (ExportError, OSError) as e:
            if output is None and isinstance(e, BrokenPipeError):
                # The reader stopped early (`| head`): nothing to report, now or when Python exits;
                # exit 1 as every command printing through rich does (Console.on_broken_pipe).
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(1) from None
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            fail(str(e) if isinstance(e, ExportError) else f"cannot write {output}: {e.strerror}")
            return
        where = f" to {output}" if output else ""
        err_console.print(f"exported {n} {'rows' if fmt in ('csv', 'focus') else 'records'}{where}")


def _write(engine: Engine, fmt: str, f: Filters, out: TextIO, what: str) -> int:
    return export(engine, fmt, f, out, what=what)
