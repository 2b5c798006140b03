"""`agenttrail budget set|list|rm` and `agenttrail alerts`: spend limits and the alerts they raised."""

from __future__ import annotations

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, UserError, console, friendly, settings_for
from agenttrail.clock import SystemClock
from agenttrail.governance.alerts import list_alerts
from agenttrail.governance.budgets import (
    list_budgets,
    parse_pcts,
    parse_usd,
    remove_budget,
    set_budget,
    spend_of,
    usd,
)
from agenttrail.governance.periods import PERIODS, zone
from agenttrail.query.output import FORMATS, render
from agenttrail.store.database import open_engine

SET_EXAMPLES = """[bold]Examples[/bold]

  agenttrail budget set --team payments --usd 500 --period month --owner lead@acme.com

  agenttrail budget set --engineer ana@acme.com --usd 40 --period day

  agenttrail budget set --key sk-at-AbC123 --usd 5 --period total   [dim]# a prefix from `key list`[/dim]

  agenttrail budget set --org --usd 20000 --period month --soft-pct 50,90

Every budget that covers a call applies (organisation, team, project, engineer, key). A spent budget
answers 429 with a message naming it and when it resets. See docs/governance.md.
"""


def register(app: typer.Typer) -> None:
    budget_app = typer.Typer(help="Spend limits enforced by the gateway.", no_args_is_help=True)
    app.add_typer(budget_app, name="budget", rich_help_panel="Governance")

    @budget_app.command("set", epilog=SET_EXAMPLES)
    @friendly
    def set_(
        usd_: str = typer.Option(..., "--usd", help="The limit in US dollars, e.g. 500 or 0.05."),
        period: str = typer.Option(..., "--period", help="day, week, month (calendar) or total (lifetime)."),
        team: str | None = typer.Option(None, "--team", help="A team's budget (all its keys)."),
        project: str | None = typer.Option(None, "--project", help="A project's budget."),
        engineer: str | None = typer.Option(None, "--engineer", help="An engineer's budget (email)."),
        key: str | None = typer.Option(None, "--key", help="One key's budget (the key, or its prefix)."),
        org: bool = typer.Option(False, "--org", help="The whole organisation's budget."),
        soft_pct: str | None = typer.Option(
            None, "--soft-pct", help="Alert thresholds in percent, e.g. 50,80,100 (the default)."
        ),
        owner: str | None = typer.Option(
            None, "--owner", help="Who is alerted and named in refusals, e.g. the team lead."
        ),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Create or change a budget. Calls are refused once spend reaches the limit (spent >= limit)."""
        chosen: list[tuple[str, str | None]] = [
            (s, v)
            for s, v in (("team", team), ("project", project), ("engineer", engineer), ("key", key))
            if v is not None
        ]
        if org:
            chosen.append(("org", None))
        if len(chosen) != 1:
            raise UserError("name exactly one of --team, --project, --engineer, --key or --org")
        if period not in PERIODS:
            raise UserError(f"--period must be one of {', '.join(PERIODS)}")
        scope, target = chosen[0]
        settings = settings_for(db, config)
        b = set_budget(
            open_engine(settings.database_url),
            scope=scope,
            target=target,
            limit_nanos=parse_usd(usd_),
            period=period,
            soft_pcts=parse_pcts(soft_pct),
            owner=owner,
            now=SystemClock().now().replace(tzinfo=None),
        )
        alerts = ", ".join(f"{p}%" for p in b.soft_pcts) or "none"
        console.print(
            f"budget {b.id}: {b.label} {usd(b.limit_nanos)} (alerts at {alerts}"
            + (f", owner {b.owner}" if b.owner else "")
            + ")",
            highlight=False,
            soft_wrap=True,
        )

    @budget_app.command("list")
    @friendly
    def list_(
        fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Budgets with this period's spend."""
        if fmt not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}")
        settings = settings_for(db, config)
        engine = open_engine(settings.database_url)
        budgets = list_budgets(engine)
        spend = spend_of(engine, budgets, SystemClock().now(), zone(settings.budget_timezone))
        cols = ["id", "scope", "name", "period", "limit_usd", "spent_usd", "reserved_usd", "remaining_usd"]
        cols += ["alerts_pct", "owner", "resets"]
        rows = []
        for b in budgets:
            w, spent, reserved = spend[b.id]
            rows.append(
                (
                    b.id,
                    b.scope,
                    b.name or "(organisation)",
                    b.period,
                    b.limit_nanos / 1e9,
                    round(spent / 1e9, 6),
                    round(reserved / 1e9, 6),
                    round(max(0, b.limit_nanos - spent) / 1e9, 6),
                    ",".join(map(str, b.soft_pcts)),
                    b.owner,
                    w.describe_end(),
                )
            )
        render(cols, rows, fmt, title="budgets")

    @budget_app.command("rm")
    @friendly
    def rm(
        budget_id: int = typer.Argument(..., help="The budget's id, as `budget list` shows it."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Remove a budget (gateways stop applying it within seconds)."""
        b = remove_budget(open_engine(settings_for(db, config).database_url), budget_id)
        console.print(f"removed budget {b.id}: {b.label} {usd(b.limit_nanos)}", highlight=False, soft_wrap=True)

    @app.command("alerts", rich_help_panel="Governance")
    @friendly
    def alerts(
        fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
        limit: int = typer.Option(200, "--limit", min=1, help="How many of the latest alerts."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Budget alerts raised, newest first, and whether their webhooks took them."""
        if fmt not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}")
        items = list_alerts(open_engine(settings_for(db, config).database_url), limit)
        cols = ["id", "created_at", "budget", "threshold_pct", "spent_usd", "owner", "delivered_at", "attempts"]
        cols += ["last_error"]
        render(cols, [tuple(a[c] for c in cols) for a in items], fmt, title="alerts")
