"""`agenttrail sql`: read-only SQL over the documented views."""

from __future__ import annotations

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, engine_for, err_console, fail, friendly
from agenttrail.query.output import FORMATS, render
from agenttrail.query.readonly_sql import DEFAULT_MAX_ROWS, SQLRefused, run_sql
from agenttrail.store.views import VIEW_NAMES


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel="Reports")
    @friendly
    def sql(
        query: str = typer.Argument(..., help="One SELECT statement."),
        fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
        max_rows: int = typer.Option(DEFAULT_MAX_ROWS, "--max-rows", help="Stop after this many rows."),
        timeout: float = typer.Option(10.0, "--timeout", help="Stop the query after this many seconds."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Run a read-only SELECT over the documented views.

        Views: teams, projects, engineers, llm_calls, sessions, events, file_changes, commits,
        pull_requests, pr_sessions, session_models, daily_spend, monthly_spend, package_installs.
        Writes, ATTACH, PRAGMA and schema changes are refused.

        Example: agenttrail sql "SELECT team, model, SUM(cost_usd) FROM llm_calls GROUP BY 1, 2"
        """
        if fmt not in FORMATS:
            fail(f"--format must be one of {', '.join(FORMATS)}")
        try:
            res = run_sql(engine_for(db, config), query, timeout_s=timeout, max_rows=max_rows)
        except SQLRefused as e:
            # A name the database did not know: the views it can read are the likely fix.
            hint = f". Readable views: {', '.join(VIEW_NAMES)}" if str(e).startswith("SQL error") else ""
            fail(f"{e}{hint}")
            return
        render(res.columns, res.rows, fmt)
        if res.truncated:
            err_console.print(
                f"[yellow]note:[/] stopped at the row cap of {res.max_rows}; use --max-rows or narrow the query"
            )
