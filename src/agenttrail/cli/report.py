"""`agenttrail report …`: the organisation's reports. One subcommand per report."""

from __future__ import annotations

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, engine_for, fail, friendly
from agenttrail.clock import SystemClock
from agenttrail.query.output import FORMATS, render
from agenttrail.reports.period import PeriodError, parse_when
from agenttrail.reports.spend import DIMENSIONS, spend

report_app = typer.Typer(
    help="Reports: spend, adoption, shipped work, outliers, models, packages.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report", rich_help_panel="Reports")


@report_app.command("spend")
@friendly
def spend_cmd(
    by: str = typer.Option("team", "--by", help=f"One of: {', '.join(DIMENSIONS)}."),
    since: str | None = typer.Option(None, "--since", help="From: a date (2026-11-01) or a span (7d)."),
    until: str | None = typer.Option(None, "--until", help="Until (exclusive); a date means the end of that day."),
    team: str | None = typer.Option(None, "--team", help="Only this team."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Spend and tokens by team, project, engineer, repo, model, agent, session or day."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    if by not in DIMENSIONS:
        fail(f"--by must be one of {', '.join(DIMENSIONS)}")
    now = SystemClock().now()
    try:
        s, u = parse_when(since, now=now), parse_when(until, now=now, end=True)
    except PeriodError as e:
        fail(str(e))
        return
    rep = spend(engine_for(db, config), by, s, u, team)
    render(rep.columns, rep.rows, fmt, title=f"spend by {by}")
