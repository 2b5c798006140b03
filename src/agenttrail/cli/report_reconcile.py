"""`agenttrail report reconcile`: per session, gateway cost against the agent's own reported cost."""

from __future__ import annotations

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, engine_for, fail, friendly
from agenttrail.cli.report import report_app
from agenttrail.clock import SystemClock
from agenttrail.query.output import FORMATS, render
from agenttrail.reports.base import FilterError, Filters, check_filters
from agenttrail.reports.period import PeriodError, parse_when
from agenttrail.reports.reconcile import reconcile


@report_app.command("reconcile")
@friendly
def reconcile_cmd(
    since: str | None = typer.Option(None, "--since", help="Sessions from: a date (2026-11-01) or a span (7d)."),
    until: str | None = typer.Option(None, "--until", help="Until (exclusive); a date means the end of that day."),
    session: str | None = typer.Option(None, "--session", help="Only this session id."),
    min_diff: float = typer.Option(0.0, "--min-diff", help="Only sessions whose difference is at least this many USD."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Per session: what the gateway priced, what the agent says it cost, and the difference.

    The agent's figure is Claude Code's own (transcript cost-state, else its OTLP cost metric); calls the
    gateway never saw are shown apart, priced from the transcript.

    Example: agenttrail report reconcile --since 7d --min-diff 0.01
    """
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    now = SystemClock().now()
    try:
        s, u = parse_when(since, now=now), parse_when(until, now=now, end=True)
    except PeriodError as e:
        fail(str(e))
        return
    engine = engine_for(db, config)
    try:
        check_filters(engine, Filters(s, u))
    except FilterError as e:
        fail(str(e))
    rep = reconcile(engine, s, u, session, min_difference_usd=min_diff)
    columns, rows = list(rep.columns), rep.rows
    if fmt == "table":  # a terminal's width: the money columns; json and csv carry every column
        keep = [i for i, c in enumerate(columns) if c in TABLE_COLUMNS]
        columns, rows = [columns[i] for i in keep], [tuple(r[i] for i in keep) for r in rows]
    render(columns, rows, fmt, title="gateway vs agent-reported cost")


TABLE_COLUMNS = (
    "session_id",
    "agent",
    "started_at",
    "gateway_cost_usd",
    "imported_cost_usd",
    "agent_cost_usd",
    "difference_usd",
    "difference_pct",
)
