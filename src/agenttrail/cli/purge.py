"""`agenttrail purge`: drop content (dialogue, commands, diffs) older than a cutoff, keeping every figure."""

from __future__ import annotations

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, console, engine_for, fail, friendly, progress_bar


def register(app: typer.Typer) -> None:
    @app.command("purge", rich_help_panel="Admin")
    @friendly
    def purge(
        older_than: str = typer.Option(
            ..., "--older-than", help="The cutoff: a span back from now (90d, 12w) or a date (2026-01-01)."
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be purged; change nothing."),
        as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Purge content recorded before the cutoff: prompts, responses, tool calls and results, command
        lines (cut to the program's name), diffs and cached responses. Costs, tokens, files and lines
        changed, paths, packages, connections, commits and PRs stay, so every report is unchanged.

        To purge on a schedule instead, set `\\[retention] content_days = 90` in agenttrail.toml and
        `agenttrail serve` does it daily. Each purge is written to the audit log.

        Example: agenttrail purge --older-than 90d --dry-run, then without --dry-run
        """
        import orjson

        from agenttrail.clock import SystemClock
        from agenttrail.query.access import audit, local_principal
        from agenttrail.reports.period import PeriodError, parse_when
        from agenttrail.store.retention import count_content_events, purge_content

        now = SystemClock().now()
        try:
            cutoff = parse_when(older_than, now=now)
        except PeriodError as e:
            fail(str(e))
            return
        assert cutoff is not None
        engine = engine_for(db, config)
        total = count_content_events(engine, cutoff)
        with progress_bar("purging", total, "content events", show=not as_json) as advance:
            purged = purge_content(engine, cutoff, dry_run=dry_run, progress=advance)
        if not dry_run:
            audit(engine, local_principal(), "purge_content", {"before": cutoff.isoformat(), **purged.as_dict()}, now)
        if as_json:
            console.print_json(
                orjson.dumps({"before": cutoff.isoformat(), "dry_run": dry_run, **purged.as_dict()}).decode()
            )
            return
        verb = "would purge" if dry_run else "purged"
        console.print(
            f"{verb} content recorded before {cutoff:%Y-%m-%d %H:%M} UTC: {purged.events} events, "
            f"{purged.diffs} diffs, {purged.commands} command lines, {purged.cached_responses} cached responses",
            highlight=False,
        )
