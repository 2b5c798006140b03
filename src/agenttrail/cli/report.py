"""`agenttrail report …`: the organisation's reports. One subcommand per report, the same filters on each.

`--format json` prints what `GET /api/v1/reports/NAME` returns; `--format csv` prints one section
(`--section`, default the first).
"""

from __future__ import annotations

from typing import Any

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, engine_for, fail, friendly
from agenttrail.clock import SystemClock
from agenttrail.query.output import FORMATS
from agenttrail.reports.base import Filters
from agenttrail.reports.period import PeriodError, parse_when
from agenttrail.reports.registry import ReportError, run_report
from agenttrail.reports.render import render_report
from agenttrail.reports.spend import DIMENSIONS
from agenttrail.reports.stats import OUTLIER_Z

report_app = typer.Typer(
    help="Reports: spend, adoption, shipped work, outliers, models, packages.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report", rich_help_panel="Reports")


SINCE = typer.Option(None, "--since", help="From: a date (2026-11-01), an ISO time, or a span back from now (7d).")
UNTIL = typer.Option(None, "--until", help="Until (exclusive); a date means the end of that day.")
TEAM = typer.Option(None, "--team", help="Only this team.")
REPO = typer.Option(None, "--repo", help="Only this repo (host/owner/name, as sessions name it).")
FMT = typer.Option("table", "--format", "-f", help="table, json or csv.")
SECTION = typer.Option(None, "--section", help="Only this section (for csv: which one; default the first).")
DB = typer.Option(None, "--db", help=DB_HELP)
CONFIG = typer.Option(None, "--config", help=CONFIG_HELP)


def filters_from(since: str | None, until: str | None, team: str | None, repo: str | None) -> Filters:
    now = SystemClock().now()
    try:
        return Filters(parse_when(since, now=now), parse_when(until, now=now, end=True), team, repo)
    except PeriodError as e:
        fail(str(e))
        raise AssertionError("unreachable") from None


def _run(
    name: str,
    *,
    since: str | None,
    until: str | None,
    team: str | None,
    repo: str | None,
    fmt: str,
    section: str | None,
    db: str | None,
    config: str | None,
    opts: dict[str, Any] | None = None,
) -> None:
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    f = filters_from(since, until, team, repo)
    try:
        rep = run_report(engine_for(db, config), name, f, opts)
        if section:
            rep.section(section)
    except (ReportError, KeyError) as e:
        fail(str(e).strip("'\""))
        return
    render_report(rep, fmt, section=section)


@report_app.command("spend")
@friendly
def spend_cmd(
    by: str = typer.Option("team", "--by", help=f"One of: {', '.join(DIMENSIONS)} (period = week)."),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    team: str | None = TEAM,
    repo: str | None = REPO,
    fmt: str = FMT,
    section: str | None = SECTION,
    db: str | None = DB,
    config: str | None = CONFIG,
) -> None:
    """Spend and tokens by team, project, engineer, repo, model, provider, agent, session or period.

    Example: agenttrail report spend --by model --since 30d --format csv > spend.csv
    """
    if by not in DIMENSIONS:
        fail(f"--by must be one of {', '.join(DIMENSIONS)}")
    _run(
        "spend",
        since=since,
        until=until,
        team=team,
        repo=repo,
        fmt=fmt,
        section=section,
        db=db,
        config=config,
        opts={"by": by},
    )


def _plain_report(name: str, doc: str) -> None:
    """A report that takes only the common filters: one command per name, not one copied function each."""

    def command(
        since: str | None = SINCE,
        until: str | None = UNTIL,
        team: str | None = TEAM,
        repo: str | None = REPO,
        fmt: str = FMT,
        section: str | None = SECTION,
        db: str | None = DB,
        config: str | None = CONFIG,
    ) -> None:
        _run(name, since=since, until=until, team=team, repo=repo, fmt=fmt, section=section, db=db, config=config)

    command.__doc__ = f"{doc}\n\nExample: agenttrail report {name} --since 2026-11-01 --team payments --format json"
    report_app.command(name)(friendly(command))


_plain_report(
    "adoption", "Per week: active engineers and their share of the roster, sessions, agent hours, repos; by agent."
)
_plain_report(
    "shipped",
    """$ per merged PR (median, p90) by team and repo; shares of spend on merged work, unmerged sessions,
    and calls outside any session.""",
)


@report_app.command("outliers")
@friendly
def outliers_cmd(
    threshold: float = typer.Option(OUTLIER_Z, "--threshold", help="Flag robust z-scores above this."),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    team: str | None = TEAM,
    repo: str | None = REPO,
    fmt: str = FMT,
    section: str | None = SECTION,
    db: str | None = DB,
    config: str | None = CONFIG,
) -> None:
    """Sessions and engineer x repo pairs whose spend is high for the lines they changed (robust z
    of ln(cost / (lines + 1)) within the repo).

    Example: agenttrail report outliers --since 30d --threshold 3
    """
    _run(
        "outliers",
        since=since,
        until=until,
        team=team,
        repo=repo,
        fmt=fmt,
        section=section,
        db=db,
        config=config,
        opts={"threshold": threshold},
    )


_plain_report("models", "Per repo and model: sessions, $ per changed line and file, share merged.")


@report_app.command("packages")
@friendly
def packages_cmd(
    name: str | None = typer.Option(None, "--name", help="Only this package, e.g. event-stream."),
    ecosystem: str | None = typer.Option(None, "--ecosystem", help="Only this ecosystem (npm, pypi, …)."),
    since: str | None = SINCE,
    until: str | None = UNTIL,
    team: str | None = TEAM,
    repo: str | None = REPO,
    fmt: str = FMT,
    section: str | None = SECTION,
    db: str | None = DB,
    config: str | None = CONFIG,
) -> None:
    """Every package an agent installed: ecosystem, name, version, engineer, repo, time.

    Example: agenttrail report packages --name event-stream --since 90d
    """
    _run(
        "packages",
        since=since,
        until=until,
        team=team,
        repo=repo,
        fmt=fmt,
        section=section,
        db=db,
        config=config,
        opts={"name": name, "ecosystem": ecosystem},
    )


import agenttrail.cli.report_reconcile  # noqa: E402, F401  (registers `report reconcile` on report_app)
